"""Train easel-mini: text encoder + 64x64 base model jointly, then the 64->256 SR stage.

    python -m examples.mini.train --out DIR --steps N --batch B --seed S [--device cuda]

Data is drawn on the fly by data-loader workers; batch b always holds samples b*B .. b*B+B-1 of
the seed's stream, whatever the number of workers, so a run is reproducible from its seed (on
CUDA up to the non-determinism of cuDNN kernels). The result is saved with `save_pretrained`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
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
from tqdm.auto import tqdm

from easel.mini import models
from easel.mini.pipeline import EaselMiniPipeline, build_pipeline, denoise, q_sample
from easel.mini.tokenizer import encode
from examples.mini import data
from examples.mini.vocabulary import default_tokenizer

TRAINED = ("text_encoder", "unet", "sr_unet")  # the pipeline's trained components
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
    checkpoint_minutes: float = 5.0  # 0: only at the end of each stage
    resume: bool = False
    save_fp16: bool = False
    progress: bool = False
    cpu_bf16: bool = False
    stop_after: int | None = None  # stop after this many steps of this invocation (checkpointed)
    foreground_weight: float = 1.0  # how much an object pixel counts against a background one
    foreground_dilate: int = 0  # the weighted region reaches this many pixels past each object
    outline_weight: float = 0.0  # added weight of each object's outline (1 pixel either side)
    scene_mix: tuple[float, float, float, float] | None = None  # single, count, relation, word
    end_at: int | None = None  # end stage 1 at this step and save (the LR schedule is --steps')
    init_from: str | None = None  # a saved pipeline whose weights a new run starts from

    @property
    def n_sr_steps(self) -> int:
        return self.sr_steps if self.sr_steps is not None else max(1, self.steps // 3)

    @property
    def n_sr_batch(self) -> int:
        return self.sr_batch if self.sr_batch is not None else max(1, self.batch // 2)


def weighted_region(foreground: torch.Tensor, dilate: int) -> torch.Tensor:
    """The object masks (N, 1, H, W) grown by `dilate` pixels each way."""
    # Weighting only an object's own pixels makes painting past its edge cheaper than falling
    # short of it, so a model learns oversized blobs. A ring around each object weighted like
    # the object charges both mistakes alike.
    if dilate <= 0:
        return foreground
    return F.max_pool2d(foreground, 2 * dilate + 1, stride=1, padding=dilate)


def outline(foreground: torch.Tensor) -> torch.Tensor:
    """The band where each object mask (N, 1, H, W) meets its background, a pixel either side:
    the pixels in which one shape differs from another of its size (a circle from a square,
    a star from a sun), where the object's colour fills the rest alike."""
    grown = F.max_pool2d(foreground, 3, stride=1, padding=1)
    shrunk = -F.max_pool2d(-foreground, 3, stride=1, padding=1)
    return grown - shrunk


class SceneBatches(IterableDataset[dict[str, Any]]):
    """Endless batches of rendered scenes; batch b is the same for a seed on any worker count."""

    def __init__(self, seed: int, batch: int, stage: int, dropout: float, crop: int,
                 base_size: int = models.BASE_SIZE, start: int = 0,
                 with_foreground: bool = False,
                 mix: tuple[float, float, float, float] | None = None) -> None:
        self.seed, self.batch, self.stage = seed, batch, stage
        self.dropout, self.crop = dropout, crop
        self.base_size = base_size
        self.start = start  # the first batch index (a resumed run starts where it stopped)
        self.with_foreground = with_foreground  # also each picture's object mask, "foreground"
        self.mix = mix  # shares of single, count, relation and word scenes (None: data's own)

    def make(self, b: int) -> dict[str, Any]:
        captions, lows, highs, masks = [], [], [], []
        for j in range(self.batch):
            rng = data.scene_rng(self.seed, b * self.batch + j)
            scene = data.sample_scene(rng, "train", mix=self.mix)
            drop = rng.random() < self.dropout
            captions.append("" if drop else scene.caption)
            if self.stage == 1:
                lows.append(data.render(scene, self.base_size))
                if self.with_foreground:
                    masks.append(data.foreground(scene, lows[-1]))
            else:
                hi, lo = data.render_pair(scene, models.SR_SIZE, self.base_size)
                # Crops are aligned to the 4x grid so the low-resolution crop matches exactly.
                c = self.crop // 4
                y, x = (int(v) * 4 for v in rng.integers(0, (models.SR_SIZE - self.crop) // 4 + 1,
                                                          size=2))
                highs.append(hi[y:y + self.crop, x:x + self.crop])
                lows.append(lo[y // 4:y // 4 + c, x // 4:x // 4 + c])
        out: dict[str, Any] = {"captions": captions, "low": _to_tensor(lows)}
        if highs:
            out["high"] = _to_tensor(highs)
        if masks:
            out["foreground"] = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        b, stride = (0, 1) if info is None else (info.id, info.num_workers)
        b += self.start
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
    """Min-SNR-gamma weights for a v-prediction loss; gamma <= 0: uniform (plain v-MSE).

    Min-SNR weighs a step by min(SNR, gamma) / (SNR + 1), which goes to zero at high noise. On
    the cosine schedule a pixel-space 32x32 model spends its first sampling steps there, and
    those are the steps that take the prompt's colours and layout: trained with Min-SNR, the CPU
    preset drew prompt-blind backgrounds after 1,300 steps. Plain v-MSE keeps them weighted."""
    if gamma <= 0:
        return torch.ones(t.shape, device=t.device)
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


def _autocast(device: torch.device, cpu_bf16: bool = False) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA; on a CPU only when asked (`--bf16`): it pays where the cores have
    bf16 matmul instructions (AVX512-BF16, AMX), and costs elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def _log(path: Path, record: dict[str, Any], quiet: bool = False) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    if quiet:  # the progress bar shows the loss; the events still print
        if "event" in record:
            tqdm.write(json.dumps(record))
        return
    print(json.dumps(record), flush=True)


@dataclass
class Stage:
    """One training stage: what it trains, how it steps, and where its batches come from."""

    number: int
    modules: dict[str, nn.Module]
    steps: int
    lr: float
    warmup: int
    batches: SceneBatches
    budget_s: float | None  # this stage stops once the run's elapsed time passes it


class RunStopped(Exception):
    """The run stopped as asked (`stop_after`), leaving a checkpoint to resume from."""


class Checkpoint:
    """Everything a stopped run needs to resume exactly where it was (written atomically)."""

    def __init__(self, out: Path) -> None:
        self.path = out / "checkpoint.pt"

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=False)
        return state

    def save(self, state: dict[str, Any]) -> None:
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.path)


class Run:
    """A training run's shared state: models, noise generator, clock, log and checkpoints."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "train_log.jsonl"
        self.device = torch.device(cfg.device)
        self.checkpoint = Checkpoint(self.out)
        self.resumed = self.checkpoint.load() if cfg.resume else None
        if self.resumed is None:
            self.log_path.unlink(missing_ok=True)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.tokenizer = default_tokenizer()
        self.pipe = build_pipeline(self.tokenizer, preset=cfg.preset, seed=cfg.seed)
        if cfg.init_from and self.resumed is None:
            _load_weights(self.pipe, Path(cfg.init_from))
        self.sched = models.training_scheduler(dict(self.pipe.scheduler.config))
        self.acp = self.sched.alphas_cumprod.to(self.device)
        self.elapsed_before = float(self.resumed["elapsed_s"]) if self.resumed else 0.0
        self.started = time.monotonic()
        self.ema: dict[str, EMA] = {}

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def log(self, record: dict[str, Any]) -> None:
        _log(self.log_path, record, quiet=self.cfg.progress)

    def stages(self) -> list[Stage]:
        cfg, pipe = self.cfg, self.pipe
        budget = cfg.max_minutes * 60 if cfg.max_minutes else None
        base_size = int(pipe.unet.config.sample_size)
        has_sr = pipe.sr_unet is not None
        first = Stage(1, {"text_encoder": pipe.text_encoder, "unet": pipe.unet}, cfg.steps,
                      cfg.lr, cfg.warmup,
                      SceneBatches(cfg.seed, cfg.batch, 1, cfg.caption_dropout, cfg.sr_crop,
                                   base_size, mix=cfg.scene_mix,
                                   with_foreground=cfg.foreground_weight != 1
                                   or cfg.outline_weight != 0),
                      (budget * 0.7 if has_sr else budget) if budget else None)
        if not has_sr:
            return [first]
        second = Stage(2, {"sr_unet": pipe.sr_unet}, cfg.n_sr_steps, cfg.sr_lr,
                       min(cfg.warmup, cfg.n_sr_steps),
                       SceneBatches(cfg.seed + 1, cfg.n_sr_batch, 2, 0.0, cfg.sr_crop, base_size),
                       budget)
        return [first, second]

    def loss(self, stage: Stage, batch: dict[str, Any]) -> torch.Tensor:
        return self.base_loss(batch) if stage.number == 1 else self.sr_loss(batch)

    def noised(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random timesteps t, the noisy x_t and the v-prediction target for clean images x0."""
        device, gen, sched = self.device, self.gen, self.sched
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=gen,
                          device=device)
        return t, sched.add_noise(x0, noise, t), sched.get_velocity(x0, noise, t)

    def base_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        device = self.device
        x0 = batch["low"].to(device, non_blocking=True)
        ids, mask = encode(self.tokenizer, batch["captions"], device)
        t, xt, target = self.noised(x0)
        with _autocast(device, self.cfg.cpu_bf16):
            emb = self.pipe.text_encoder(ids, mask)
            pred = denoise(self.pipe.unet, xt, t, emb, mask)
        error = F.mse_loss(pred.float(), target, reduction="none")
        if "foreground" in batch:  # objects count foreground_weight times a background pixel
            objects = batch["foreground"].to(device)
            region = weighted_region(objects, self.cfg.foreground_dilate)
            w = 1 + (self.cfg.foreground_weight - 1) * region
            if self.cfg.outline_weight:
                w = w + self.cfg.outline_weight * outline(objects)
            per = (error * w).mean(dim=(1, 2, 3)) / w.mean(dim=(1, 2, 3))
        else:
            per = error.mean(dim=(1, 2, 3))
        return (per * _loss_weights(self.acp, t, self.cfg.min_snr_gamma)).mean()

    def sr_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        device, gen, sr = self.device, self.gen, self.pipe.sr_unet
        x0 = batch["high"].to(device, non_blocking=True)
        low = batch["low"].to(device, non_blocking=True)
        n = x0.shape[0]
        up = F.interpolate(low, size=x0.shape[-2:], mode="bilinear", align_corners=False)
        aug = torch.randint(0, SR_MAX_AUG + 1, (n,), generator=gen, device=device)
        up = q_sample(self.acp, up, torch.randn(up.shape, generator=gen, device=device), aug)
        t, xt, target = self.noised(x0)
        dummy = torch.zeros(n, 1, sr.config.cross_attention_dim, device=device)
        with _autocast(device, self.cfg.cpu_bf16):
            pred = sr(torch.cat([xt, up], dim=1), t, encoder_hidden_states=dummy,
                      class_labels=aug).sample
        per = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
        return (per * _loss_weights(self.acp, t, self.cfg.min_snr_gamma)).mean()

    def run_stage(self, stage: Stage) -> float:
        """Train one stage from its first step, or from the checkpoint's; its seconds."""
        cfg = self.cfg
        params = [p for m in stage.modules.values() for p in m.to(self.device).train().parameters()]
        opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=0.01, betas=(0.9, 0.99))
        lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(stage.steps, stage.warmup))
        for name, module in stage.modules.items():
            self.ema[name] = EMA(module, cfg.ema_decay)
        first = self.restore(stage, opt, lr_sched)
        last = stage.steps
        if cfg.end_at is not None and stage.number == 1:
            last = min(stage.steps, cfg.end_at)
        if first >= last:
            return 0.0
        stage.batches.start = first
        batches = _loader(stage.batches, cfg.workers)
        t0 = last_save = time.monotonic()
        every_s = cfg.checkpoint_minutes * 60
        bar = tqdm(range(first, last), initial=first, total=last,
                   desc=f"stage {stage.number}", disable=not cfg.progress, dynamic_ncols=True)
        for step in bar:
            loss = self.loss(stage, next(batches))
            _step(opt, lr_sched, params, loss)
            for name, module in stage.modules.items():
                self.ema[name].update(module, step)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"stage {stage.number} loss is {value} at step {step}")
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if step % cfg.log_every == 0 or step == stage.steps - 1:
                self.log({"stage": stage.number, "step": step, "loss": value,
                          "lr": lr_sched.get_last_lr()[0], "s": round(self.elapsed(), 1)})
            if every_s and time.monotonic() - last_save > every_s:
                self.save_checkpoint(stage, step + 1, opt, lr_sched)
                last_save = time.monotonic()
            if cfg.stop_after is not None and step + 1 - first >= cfg.stop_after:
                self.save_checkpoint(stage, step + 1, opt, lr_sched)
                raise RunStopped(f"stopped after {cfg.stop_after} steps at stage "
                                 f"{stage.number} step {step + 1}; --resume continues")
            if stage.budget_s and self.elapsed() > stage.budget_s:
                self.log({"event": f"stage {stage.number} stopped by the time budget",
                          "step": step})
                last = stage.steps  # the stage counts as done
                break
        bar.close()
        del batches
        if last < stage.steps:  # --end-at: a later --resume may still go on to --steps
            self.log({"event": f"stage {stage.number} ended at --end-at", "step": last})
        self.save_checkpoint(stage, last, opt, lr_sched)
        return time.monotonic() - t0

    def restore(self, stage: Stage, opt: torch.optim.Optimizer, lr_sched: Any) -> int:
        """Load the checkpoint's weights; the step this stage resumes at (0: from the start)."""
        state = self.resumed
        if state is None or state["stage"] < stage.number:
            return 0  # the checkpoint holds nothing of this stage yet
        for name, weights in state["modules"].items():
            getattr(self.pipe, name).load_state_dict(weights)
        for name, weights in state["ema"].items():
            if name in self.ema:
                self.ema[name].module.load_state_dict(weights)
        if state["stage"] > stage.number:
            return stage.steps  # this stage was done before the checkpoint
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        self.gen.set_state(state["generator"])
        self.log({"event": "resumed", "stage": stage.number, "step": state["step"]})
        return int(state["step"])

    def save_checkpoint(self, stage: Stage, next_step: int, opt: torch.optim.Optimizer,
                        lr_sched: Any) -> None:
        state = {
            "stage": stage.number, "step": next_step, "elapsed_s": self.elapsed(),
            "modules": {n: getattr(self.pipe, n).state_dict() for n in TRAINED
                        if getattr(self.pipe, n) is not None},
            "ema": {n: e.module.state_dict() for n, e in self.ema.items()},
            "optimizer": opt.state_dict(), "lr_scheduler": lr_sched.state_dict(),
            "generator": self.gen.get_state(),
        }
        self.checkpoint.save(state)
        self.final().save_pretrained(self.out / "latest", safe_serialization=True)
        self.log({"event": "checkpoint", "stage": stage.number, "step": next_step})

    def final(self) -> EaselMiniPipeline:
        """The pipeline of the EMA weights (the raw weights where a stage has not run yet)."""
        def pick(name: str) -> Any:
            module = self.ema[name].module if name in self.ema else getattr(self.pipe, name)
            return None if module is None else copy.deepcopy(module).float().cpu().eval()

        return EaselMiniPipeline(
            tokenizer=self.tokenizer,
            text_encoder=pick("text_encoder"),
            unet=pick("unet"),
            scheduler=self.pipe.scheduler,
            sr_unet=pick("sr_unet"),
            sr_scheduler=self.pipe.sr_scheduler,
        )


def train(cfg: TrainConfig) -> EaselMiniPipeline:
    run = Run(cfg)
    if run.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    pipe = run.pipe
    run.log({"event": "start", "config": asdict(cfg), "params": {
        name: _n_params(getattr(pipe, name)) for name in TRAINED
        if getattr(pipe, name) is not None}})
    seconds = {f"stage{stage.number}_s": run.run_stage(stage) for stage in run.stages()}
    final = run.final()
    final.save_pretrained(run.out)
    if cfg.save_fp16:
        _to_fp16(run.out)
    run.log({"event": "saved", "dir": str(run.out), **seconds, "total_s": run.elapsed()})
    return final


def _load_weights(pipe: EaselMiniPipeline, source: Path) -> None:
    """Start from a saved pipeline's weights (the shipped ones, say): a later session trains on
    from them with a fresh optimiser and schedule when the run's checkpoint is gone. The preset
    must build the same modules; a mismatch fails here, naming the parameters. The one thing a
    preset may add is the pooled text (`base_pooled_text`), which starts silent (its new
    parameters keep their initial values)."""
    saved = EaselMiniPipeline.from_pretrained(source, dtype=torch.float32)
    for name in TRAINED:
        module, weights = getattr(pipe, name), getattr(saved, name)
        if (module is None) != (weights is None):
            raise ValueError(f"{source} has {'no ' if weights is None else ''}{name}, "
                             f"the preset {'has' if module is not None else 'has none'}")
        if module is not None:
            missing, unexpected = module.load_state_dict(weights.state_dict(), strict=False)
            added = [k for k in missing if not k.startswith("add_embedding.")]
            if added or unexpected:
                raise ValueError(f"{source}'s {name} does not fit the preset: missing "
                                 f"{added or 'nothing'}, unexpected {unexpected or 'nothing'}")


def _to_fp16(out: Path) -> None:
    """Rewrite each saved safetensors file in fp16: half the bytes, and the shipped weights are
    loaded back in the placement's dtype (fp32 on a CPU) anyway."""
    from safetensors.torch import load_file, save_file

    for path in out.glob("*/*.safetensors"):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
        path.chmod(0o644)  # safetensors writes through a private temporary file


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
    p = argparse.ArgumentParser(prog="python -m examples.mini.train", description=__doc__)
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
    p.add_argument("--min-snr-gamma", type=float, default=5.0,
                   help="Min-SNR loss weighting; 0 for plain v-MSE (what the CPU preset uses)")
    p.add_argument("--workers", type=int, default=0, help="data-loader processes")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget; stage 1 gets 70%% of it, stage 2 the rest")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="write OUT/checkpoint.pt (and the EMA pipeline to OUT/latest) this often")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt where a stopped run left off")
    p.add_argument("--fp16", action="store_true", help="save the final weights in fp16")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on a CPU as well")
    p.add_argument("--foreground-weight", type=float, default=1.0,
                   help="loss weight of object pixels against background ones (the renderer "
                        "knows the masks): objects are a small share of a 32x32 picture")
    p.add_argument("--foreground-dilate", type=int, default=0,
                   help="also weight the N pixels around each object like the object, so "
                        "the weighting does not favour painting objects too big")
    p.add_argument("--outline-weight", type=float, default=0.0,
                   help="added loss weight of each object's outline, a pixel either side of "
                        "its edge: where one shape differs from another")
    p.add_argument("--scene-mix", type=_mix, default=None, metavar="S,C,R,W",
                   help="shares of single, count, relation and word scenes (default "
                        "0.35,0.25,0.2,0.2)")
    p.add_argument("--end-at", type=int, default=None,
                   help="end stage 1 at step N and save the pipeline; the LR schedule stays "
                        "that of --steps, so a later --resume can go on to --steps")
    p.add_argument("--init-from", default=None,
                   help="start from the weights of this saved pipeline (e.g. the shipped ones) "
                        "with a fresh optimiser and schedule; --resume continues a checkpoint")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after N steps, leaving a checkpoint (split a run over sessions)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   default=sys.stderr.isatty(),
                   help="a progress bar instead of a JSON line per logged step (default: on a "
                        "terminal); the log file has every line either way")
    a = p.parse_args(argv)
    return TrainConfig(
        out=a.out, steps=a.steps, batch=a.batch, sr_steps=a.sr_steps, sr_batch=a.sr_batch,
        sr_crop=a.sr_crop, seed=a.seed, device=a.device, preset=a.preset, lr=a.lr,
        sr_lr=a.sr_lr, warmup=a.warmup, workers=a.workers, max_minutes=a.max_minutes,
        log_every=a.log_every, checkpoint_minutes=a.checkpoint_minutes, resume=a.resume,
        save_fp16=a.fp16, progress=a.progress, cpu_bf16=a.bf16, min_snr_gamma=a.min_snr_gamma,
        stop_after=a.stop_after, end_at=a.end_at, init_from=a.init_from,
        foreground_weight=a.foreground_weight, foreground_dilate=a.foreground_dilate,
        outline_weight=a.outline_weight, scene_mix=a.scene_mix,
    )


def _mix(text: str) -> tuple[float, float, float, float]:
    try:
        shares = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not four numbers: {text!r}") from None
    if len(shares) != 4 or min(shares) < 0 or sum(shares) <= 0:
        raise argparse.ArgumentTypeError(f"want four shares >= 0, not all 0: {text!r}")
    total = sum(shares)
    return (shares[0] / total, shares[1] / total, shares[2] / total, shares[3] / total)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        train(parse_args(argv))
    except RunStopped as stopped:
        print(stopped)


if __name__ == "__main__":
    main()
