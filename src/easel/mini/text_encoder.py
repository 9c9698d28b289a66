"""A small transformer text encoder, trained from scratch together with the base model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin  # ModelMixin must be visible here: see pipeline.py
from diffusers.configuration_utils import register_to_config
from torch import nn


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mult: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias
        )
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.ff(self.norm2(x))


class MiniTextEncoder(ModelMixin, ConfigMixin):
    """Pre-norm transformer encoder: token ids -> per-token embeddings (B, L, hidden_size)."""

    @register_to_config
    def __init__(
        self,
        vocab_size: int = 160,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        max_length: int = 32,
        ffn_mult: int = 4,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, hidden_size)
        self.positions = nn.Embedding(max_length, hidden_size)
        self.blocks = nn.ModuleList(
            [_Block(hidden_size, num_heads, ffn_mult) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        n = input_ids.shape[1]
        pos = torch.arange(n, device=input_ids.device)
        x = self.tokens(input_ids) + self.positions(pos)[None]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # Additive bias rather than a boolean mask: padded keys get -inf-like weight in any dtype.
        keep = attention_mask[:, None, None, :].to(torch.bool)
        bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(~keep, torch.finfo(x.dtype).min)
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)
