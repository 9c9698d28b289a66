from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from examples.mini import data
from examples.mini.train import (
    Run,
    RunStopped,
    SceneBatches,
    outline,
    parse_args,
    train,
    weighted_region,
)

from easel.mini.pipeline import EaselMiniPipeline


def test_cli_arguments() -> None:
    cfg = parse_args(["--out", "x", "--steps", "5", "--batch", "4", "--seed", "3",
                      "--device", "cpu"])
    assert (cfg.out, cfg.steps, cfg.batch, cfg.seed, cfg.device) == ("x", 5, 4, 3, "cpu")
    assert cfg.n_sr_steps == 1 and cfg.n_sr_batch == 2


def test_batches_are_reproducible() -> None:
    a = SceneBatches(1, 3, 2, 0.1, 64).make(4)
    b = SceneBatches(1, 3, 2, 0.1, 64).make(4)
    assert a["captions"] == b["captions"]
    assert torch.equal(a["high"], b["high"]) and a["high"].shape == (3, 3, 64, 64)
    assert a["low"].shape == (3, 3, 16, 16)


def test_foreground_weighting_adds_each_pictures_object_mask() -> None:
    batch = SceneBatches(1, 3, 1, 0.0, 64, 32, with_foreground=True).make(0)
    assert batch["foreground"].shape == (3, 1, 32, 32)
    assert 0 < float(batch["foreground"].mean()) < 0.5
    assert "foreground" not in SceneBatches(1, 3, 1, 0.0, 64, 32).make(0)


def test_the_weighted_region_grows_past_each_object_by_the_dilation() -> None:
    mask = torch.zeros(1, 1, 9, 9)
    mask[0, 0, 4, 4] = 1
    assert torch.equal(weighted_region(mask, 0), mask)
    grown = weighted_region(mask, 2)
    assert grown.sum() == 25 and grown[0, 0, 2:7, 2:7].all() and grown.shape == mask.shape


def test_training_smoke_run_saves_a_loadable_pipeline(tmp_path: Path) -> None:
    cfg = parse_args(["--out", str(tmp_path), "--steps", "2", "--batch", "2", "--sr-steps", "2",
                      "--sr-crop", "64", "--preset", "tiny", "--seed", "0", "--device", "cpu",
                      "--log-every", "1"])
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    pipe = EaselMiniPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(["a red circle"], num_inference_steps=2, sr_num_inference_steps=1, width=64,
               height=64, generator=[torch.Generator().manual_seed(0)])
    assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {f"{f.parent.name}/{k}": v for f in sorted(path.glob("*/*.safetensors"))
            for k, v in load_file(f).items()}


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """A run split by --stop-after and --resume ends with the weights of one straight run."""
    args = ["--steps", "4", "--batch", "2", "--preset", "tiny-cpu-pooled", "--seed", "1",
            "--device", "cpu", "--warmup", "2", "--log-every", "1", "--foreground-weight", "5",
            "--foreground-dilate", "1", "--outline-weight", "5", "--scene-mix", "3,1,1,1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(parse_args(["--out", str(straight), *args]))
    with pytest.raises(RunStopped, match="--resume continues"):
        train(parse_args(["--out", str(split), "--stop-after", "2", *args]))
    assert (split / "checkpoint.pt").exists() and (split / "latest/model_index.json").exists()
    assert not (split / "model_index.json").exists()  # nothing final until the run ends
    train(parse_args(["--out", str(split), "--resume", *args]))
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (split / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [0, 1, 2, 3]
    assert {"event": "resumed", "stage": 1, "step": 2} in log


def test_fp16_weights_load_back_in_fp32(tmp_path: Path) -> None:
    train(parse_args(["--out", str(tmp_path), "--steps", "1", "--batch", "2", "--preset",
                      "tiny-cpu", "--device", "cpu", "--fp16"]))
    assert all(v.dtype == torch.float16 for v in _weights(tmp_path).values())
    pipe = EaselMiniPipeline.from_pretrained(tmp_path, dtype=torch.float32)
    assert pipe.unet.dtype == pipe.text_encoder.dtype == torch.float32


def test_end_at_saves_early_on_the_full_schedule_and_resume_finishes_it(tmp_path: Path) -> None:
    args = ["--steps", "4", "--batch", "2", "--preset", "tiny-cpu-pooled", "--seed", "2",
            "--device", "cpu", "--warmup", "2", "--log-every", "1"]
    straight, ended = tmp_path / "straight", tmp_path / "ended"
    train(parse_args(["--out", str(straight), *args]))
    train(parse_args(["--out", str(ended), "--end-at", "2", *args]))
    log = [json.loads(line) for line in (ended / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [0, 1]
    assert {"event": "stage 1 ended at --end-at", "step": 2} in log
    full = [json.loads(line) for line in (straight / "train_log.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in full if "loss" in r}
    assert [r["lr"] for r in log if "loss" in r] == [lrs[0], lrs[1]]  # the 4-step schedule
    early = _weights(ended)
    train(parse_args(["--out", str(ended), "--resume", *args]))  # on to --steps
    finished, reference = _weights(ended), _weights(straight)
    assert all(torch.equal(finished[k], reference[k]) for k in reference)
    assert not all(torch.equal(early[k], reference[k]) for k in reference)


def test_a_plain_unet_run_goes_on_with_coordinate_channels(tmp_path: Path) -> None:
    """widen_input turns a cpu-plain checkpoint into a cpu one that still draws what it drew."""
    from examples.mini.widen_input import KERNEL
    from examples.mini.widen_input import main as widen_main

    from easel.mini import models
    from easel.mini.pipeline import denoise

    args = ["--out", str(tmp_path), "--steps", "3", "--batch", "2", "--seed", "0",
            "--device", "cpu", "--warmup", "1", "--log-every", "1"]
    with pytest.raises(RunStopped):
        train(parse_args([*args, "--preset", "cpu-plain", "--stop-after", "1"]))
    plain = EaselMiniPipeline.from_pretrained(tmp_path / "latest").unet
    widen_main([str(tmp_path)])
    state = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    wide = models.base_model(models.PRESETS["cpu"])
    wide.load_state_dict(state["ema"]["unet"])
    assert wide.config.in_channels == 3 + models.COORDINATE_CHANNELS
    assert state["modules"]["unet"][KERNEL].shape[1] == 5
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
    embeds, mask = torch.randn(2, 4, 192), torch.ones(2, 4, dtype=torch.long)
    with torch.no_grad():
        assert torch.allclose(denoise(wide, x, t, embeds, mask),
                              denoise(plain, x, t, embeds, mask), atol=1e-5)
    train(parse_args([*args, "--preset", "cpu", "--resume"]))
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [0, 1, 2]
    resumed = EaselMiniPipeline.from_pretrained(tmp_path)
    assert resumed.unet.config.in_channels == 5 and (tmp_path / "checkpoint.plain.pt").exists()


def test_coordinate_planes_run_from_minus_one_to_one() -> None:
    from easel.mini.pipeline import coordinate_planes

    planes = coordinate_planes(torch.zeros(3, 3, 4, 8))
    assert planes.shape == (3, 2, 4, 8)
    assert torch.equal(planes[0, 0, 0], torch.linspace(-1, 1, 8))  # x along a row
    assert torch.equal(planes[2, 1, :, 5], torch.linspace(-1, 1, 4))  # y down a column


def test_a_run_can_start_from_a_saved_pipelines_weights(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["--steps", "1", "--batch", "2", "--preset", "tiny-cpu", "--device", "cpu"]
    train(parse_args(["--out", str(first), "--seed", "0", *args]))
    run = Run(parse_args(["--out", str(second), "--seed", "5", "--init-from", str(first), *args]))
    saved = EaselMiniPipeline.from_pretrained(first)
    for name in ("text_encoder", "unet"):
        mine, theirs = getattr(run.pipe, name).state_dict(), getattr(saved, name).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    with pytest.raises(ValueError, match=r"unet does not fit the preset: missing .*unexpected"):
        Run(parse_args(["--out", str(tmp_path / "third"), "--init-from", str(first),
                        "--steps", "1", "--batch", "2", "--preset", "tiny-dit"]))


def test_the_outline_is_the_band_a_pixel_either_side_of_each_edge() -> None:
    mask = torch.zeros(1, 1, 9, 9)
    mask[0, 0, 2:7, 2:7] = 1  # a 5x5 square
    band = outline(mask)
    assert band[0, 0, 1:8, 1:8].sum() == 49 - 9 and band.sum() == 40  # 7x7 less the 3x3 core
    assert band[0, 0, 4, 4] == 0 and band[0, 0, 2, 2] == 1 and band[0, 0, 1, 1] == 1
    assert band[0, 0, 0].sum() == 0


def test_the_scene_mix_sets_the_share_of_each_kind() -> None:
    cfg = parse_args(["--out", "x", "--scene-mix", "9,0,0,1", "--outline-weight", "5"])
    assert cfg.scene_mix == (0.9, 0.0, 0.0, 0.1) and cfg.outline_weight == 5
    kinds = [data.sample_scene(data.scene_rng(0, i), mix=cfg.scene_mix).kind for i in range(200)]
    assert set(kinds) == {"single", "word"} and 160 <= kinds.count("single") <= 195
    batch = SceneBatches(0, 4, 1, 0.0, 64, 32, mix=(0, 0, 1, 0)).make(0)
    phrases = [f" {p} " for ps in data.RELATION_PHRASES.values() for p in ps]
    assert all(any(p in c for p in phrases) for c in batch["captions"])
    for bad in ("1,2,3", "0,0,0,0", "1,-1,1,1", "a,b,c,d"):
        with pytest.raises(SystemExit):
            parse_args(["--out", "x", "--scene-mix", bad])


def test_pooled_text_starts_silent_on_weights_trained_without_it_then_learns(
    tmp_path: Path,
) -> None:
    """--init-from a UNet without the pooled text: the same pictures at first, then training
    moves the pooled text's scale off zero."""
    from easel.mini.pipeline import denoise

    plain, pooled = tmp_path / "plain", tmp_path / "pooled"
    args = ["--batch", "2", "--device", "cpu", "--warmup", "1", "--outline-weight", "3",
            "--foreground-weight", "2"]
    train(parse_args(["--out", str(plain), "--steps", "1", "--preset", "tiny-cpu", *args]))
    run = Run(parse_args(["--out", str(pooled), "--steps", "3", "--preset", "tiny-cpu-pooled",
                          "--init-from", str(plain), *args]))
    before = EaselMiniPipeline.from_pretrained(plain).unet
    assert run.pipe.unet.config.addition_embed_type == "text"
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
    embeds, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(denoise(run.pipe.unet, x, t, embeds, mask),
                           denoise(before, x, t, embeds, mask))
    train(parse_args(["--out", str(pooled), "--steps", "3", "--preset", "tiny-cpu-pooled",
                      "--init-from", str(plain), *args]))
    after = EaselMiniPipeline.from_pretrained(pooled).unet
    assert after.config.addition_embed_type == "text"
    assert float(after.add_embedding.norm2.weight.abs().sum()) > 0
