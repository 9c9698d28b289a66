"""Train easel-mini: text encoder + 64x64 base model jointly, then the 64->256 SR stage.

    python -m easel.mini.train --out DIR --steps N --batch B --seed S [--device cuda]

Data is drawn on the fly by data-loader workers; batch b always holds samples b*B .. b*B+B-1 of
the seed's stream, whatever the number of workers, so a run is reproducible from its seed (on
CUDA up to the non-determinism of cuDNN kernels). The result is saved with `save_pretrained`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from easel.mini import data, models
from easel.mini.pipeline import EaselMiniPipeline, build_pipeline, q_sample
from easel.mini.tokenizer import default_tokenizer, encode

SR_MAX_AUG = 350  # SR trains on augmentation levels 0..350 and samples at the pipeline's level


@dataclass
class TrainConfig:
    out: str
    steps: int = 12000
    batch: int = 128
    sr_steps: int | None = None  # default: steps // 3
    sr_batch: int | None = None  # default: batch // 2
    sr_crop: int = 128
    seed: int = 0
    device: str = "cpu"
    preset: str = "full"
    lr: float = 3e-4
    sr_lr: float = 3e-4
    warmup: int = 500
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    workers: int = 0
    max_minutes: float | None = None
    log_every: int = 100

    @property
    def n_sr_steps(self) -> int:
        return self.sr_steps if self.sr_steps is not None else max(1, self.steps // 3)

    @property
    def n_sr_batch(self) -> int:
        return self.sr_batch if self.sr_batch is not None else max(1, self.batch // 2)


class SceneBatches(IterableDataset[dict[str, Any]]):
    """Endless batches of rendered scenes; batch b is the same for a seed on any worker count."""

    def __init__(self, seed: int, batch: int, stage: int, dropout: float, crop: int) -> None:
        self.seed, self.batch, self.stage = seed, batch, stage
        self.dropout, self.crop = dropout, crop

    def make(self, b: int) -> dict[str, Any]:
        captions, lows, highs = [], [], []
        for j in range(self.batch):
            rng = data.scene_rng(self.seed, b * self.batch + j)
            scene = data.sample_scene(rng, "train")
            drop = rng.random() < self.dropout
            captions.append("" if drop else scene.caption)
            if self.stage == 1:
                lows.append(data.render(scene, models.BASE_SIZE))
            else:
                hi, lo = data.render_pair(scene, models.SR_SIZE, models.BASE_SIZE)
                # Crops are aligned to the 4x grid so the low-resolution crop matches exactly.
                c = self.crop // 4
                y, x = (int(v) * 4 for v in rng.integers(0, (models.SR_SIZE - self.crop) // 4 + 1,
                                                          size=2))
                highs.append(hi[y:y + self.crop, x:x + self.crop])
                lows.append(lo[y // 4:y // 4 + c, x // 4:x // 4 + c])
        out: dict[str, Any] = {"captions": captions, "low": _to_tensor(lows)}
        if highs:
            out["high"] = _to_tensor(highs)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        b, stride = (0, 1) if info is None else (info.id, info.num_workers)
        while True:
            yield self.make(b)
            b += stride


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    arr = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


class EMA:
    """Exponential moving average of a module's parameters (what gets saved)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        # Warm-up: early averages would otherwise be dominated by the random initialisation.
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p.detach().to(e.dtype), 1 - d)


def _lr_lambda(total: int, warmup: int) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _loss_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights for a v-prediction loss: faster convergence on short schedules."""
    a = alphas_cumprod.to(t.device)[t]
    snr = a / (1 - a)
    return snr.clamp(max=gamma) / (snr + 1)


def _loader(ds: SceneBatches, workers: int) -> Iterator[dict[str, Any]]:
    loader = DataLoader(
        ds,
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )
    return iter(loader)


def _autocast(device: torch.device) -> AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def train(cfg: TrainConfig) -> EaselMiniPipeline:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log_path.unlink(missing_ok=True)
    device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    started = time.monotonic()
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None

    tokenizer = default_tokenizer()
    pipe = build_pipeline(tokenizer, preset=cfg.preset, seed=cfg.seed)
    text, unet, sr = pipe.text_encoder, pipe.unet, pipe.sr_unet
    sched = models.training_scheduler(dict(pipe.scheduler.config))
    acp = sched.alphas_cumprod.to(device)
    _log(log_path, {"event": "start", "config": asdict(cfg), "params": {
        "text_encoder": _n_params(text), "unet": _n_params(unet), "sr_unet": _n_params(sr)}})

    # --- stage 1: text encoder + base UNet ---
    text.to(device).train()
    unet.to(device).train()
    params = list(text.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.99))
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.steps, cfg.warmup))
    ema_text, ema_unet = EMA(text, cfg.ema_decay), EMA(unet, cfg.ema_decay)
    stream = SceneBatches(cfg.seed, cfg.batch, 1, cfg.caption_dropout, cfg.sr_crop)
    batches = _loader(stream, cfg.workers)
    stage_budget = budget * 0.7 if budget else None
    t0 = time.monotonic()
    for step in range(cfg.steps):
        batch = next(batches)
        x0 = batch["low"].to(device, non_blocking=True)
        ids, mask = encode(tokenizer, batch["captions"], device)
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=gen,
                          device=device)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        with _autocast(device):
            emb = text(ids, mask)
            pred = unet(xt, t, encoder_hidden_states=emb, encoder_attention_mask=mask).sample
        per = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per * _loss_weights(acp, t, cfg.min_snr_gamma)).mean()
        _step(opt, lr_sched, params, loss)
        ema_text.update(text, step)
        ema_unet.update(unet, step)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"stage 1 loss is {loss.item()} at step {step}")
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            _log(log_path, {"stage": 1, "step": step, "loss": loss.item(),
                            "lr": lr_sched.get_last_lr()[0], "s": time.monotonic() - t0})
        if stage_budget and time.monotonic() - started > stage_budget:
            _log(log_path, {"event": "stage 1 stopped by the time budget", "step": step})
            break
    stage1_s = time.monotonic() - t0
    del batches

    # --- stage 2: super-resolution ---
    sr.to(device).train()
    sr_params = list(sr.parameters())
    opt = torch.optim.AdamW(sr_params, lr=cfg.sr_lr, weight_decay=0.01, betas=(0.9, 0.99))
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(cfg.n_sr_steps, min(cfg.warmup, cfg.n_sr_steps))
    )
    ema_sr = EMA(sr, cfg.ema_decay)
    batches = _loader(SceneBatches(cfg.seed + 1, cfg.n_sr_batch, 2, 0.0, cfg.sr_crop), cfg.workers)
    t0 = time.monotonic()
    for step in range(cfg.n_sr_steps):
        batch = next(batches)
        x0 = batch["high"].to(device, non_blocking=True)
        low = batch["low"].to(device, non_blocking=True)
        n = x0.shape[0]
        up = F.interpolate(low, size=x0.shape[-2:], mode="bilinear", align_corners=False)
        aug = torch.randint(0, SR_MAX_AUG + 1, (n,), generator=gen, device=device)
        up = q_sample(acp, up, torch.randn(up.shape, generator=gen, device=device), aug)
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, sched.config.num_train_timesteps, (n,), generator=gen, device=device)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        dummy = torch.zeros(n, 1, sr.config.cross_attention_dim, device=device)
        with _autocast(device):
            pred = sr(torch.cat([xt, up], dim=1), t, encoder_hidden_states=dummy,
                      class_labels=aug).sample
        per = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per * _loss_weights(acp, t, cfg.min_snr_gamma)).mean()
        _step(opt, lr_sched, sr_params, loss)
        ema_sr.update(sr, step)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"stage 2 loss is {loss.item()} at step {step}")
        if step % cfg.log_every == 0 or step == cfg.n_sr_steps - 1:
            _log(log_path, {"stage": 2, "step": step, "loss": loss.item(),
                            "lr": lr_sched.get_last_lr()[0], "s": time.monotonic() - t0})
        if budget and time.monotonic() - started > budget:
            _log(log_path, {"event": "stage 2 stopped by the time budget", "step": step})
            break
    stage2_s = time.monotonic() - t0
    del batches

    final = EaselMiniPipeline(
        tokenizer=tokenizer,
        text_encoder=ema_text.module.float().cpu(),
        unet=ema_unet.module.float().cpu(),
        scheduler=pipe.scheduler,
        sr_unet=ema_sr.module.float().cpu(),
        sr_scheduler=pipe.sr_scheduler,
    )
    final.save_pretrained(out)
    _log(log_path, {"event": "saved", "dir": str(out), "stage1_s": stage1_s,
                    "stage2_s": stage2_s, "total_s": time.monotonic() - started})
    return final


def _step(
    opt: torch.optim.Optimizer, lr_sched: Any, params: list[nn.Parameter], loss: torch.Tensor
) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    lr_sched.step()


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m easel.mini.train", description=__doc__)
    p.add_argument("--out", required=True, help="directory the pipeline is saved to")
    p.add_argument("--steps", type=int, default=12000, help="stage 1 (text encoder + base) steps")
    p.add_argument("--batch", type=int, default=128, help="stage 1 batch size")
    p.add_argument("--sr-steps", type=int, default=None, help="stage 2 steps (default steps/3)")
    p.add_argument("--sr-batch", type=int, default=None, help="stage 2 batch (default batch/2)")
    p.add_argument("--sr-crop", type=int, default=128, help="stage 2 training crop (of 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", choices=sorted(models.PRESETS), default="full")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--sr-lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--workers", type=int, default=0, help="data-loader processes")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget; stage 1 gets 70%% of it, stage 2 the rest")
    p.add_argument("--log-every", type=int, default=100)
    a = p.parse_args(argv)
    return TrainConfig(
        out=a.out, steps=a.steps, batch=a.batch, sr_steps=a.sr_steps, sr_batch=a.sr_batch,
        sr_crop=a.sr_crop, seed=a.seed, device=a.device, preset=a.preset, lr=a.lr,
        sr_lr=a.sr_lr, warmup=a.warmup, workers=a.workers, max_minutes=a.max_minutes,
        log_every=a.log_every,
    )


def main(argv: Sequence[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
