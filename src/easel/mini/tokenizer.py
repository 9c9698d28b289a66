"""The caption tokenizer: whole words for the scene vocabulary, single letters for drawn text.

Words to be written in the picture are spelled letter by letter, so the text encoder sees the
letters it has to draw (and can meet a word it never saw as a whole). The tokenizer is a
`tokenizers` WordLevel model wrapped in transformers' fast tokenizer; it ships as a file beside
the weights (`shipped_tokenizer`), built once from the training corpus by
examples/mini/vocabulary.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

MAX_LENGTH = 32

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "'": '"', "’": '"'})
_TOKEN = re.compile(r'[A-Za-z]+|[^\sA-Za-z]')


def normalize_prompt(text: str) -> str:
    """Lower-case a prompt except the text it asks to draw.

    Text to draw is what stands in quotes, or a shouted word of two or more capitals
    (`a sign that says STOP`); everything else is vocabulary and is lower-cased, so that
    "A red circle" and "a red circle" mean the same thing.
    """
    out: list[str] = []
    quoted = False
    for tok in _TOKEN.findall(text.translate(_QUOTES)):
        if tok == '"':
            quoted = not quoted
            out.append(tok)
        elif tok.isalpha() and (quoted or (len(tok) >= 2 and tok.isupper())):
            out.append(tok.upper())
        else:
            out.append(tok.lower())
    return " ".join(out)


def shipped_tokenizer() -> Any:
    """The tokenizer easel-mini was trained with, as it ships beside the weights (a file: the
    vocabulary is the training corpus's, built by examples/mini/vocabulary.py)."""
    from transformers import PreTrainedTokenizerFast

    from easel.mini.weights import TOKENIZER_DIR

    return PreTrainedTokenizerFast.from_pretrained(TOKENIZER_DIR)


def encode(tokenizer: Any, prompts: Sequence[str], device: torch.device | str = "cpu") -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Token ids and attention mask, (B, MAX_LENGTH) each, for normalized prompts."""
    batch = tokenizer(
        [normalize_prompt(p) for p in prompts],
        padding="max_length",
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def decode(tokenizer: Any, ids: torch.Tensor) -> str:
    return str(tokenizer.decode(ids.tolist(), skip_special_tokens=True))
