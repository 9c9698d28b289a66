from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easel.mini import models
from easel.mini.pipeline import EaselMiniPipeline, build_random_pipeline


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_saved_layout_and_round_trip(
    tiny_dir: Path, tiny_pipe: EaselMiniPipeline, tiny_preset: str
) -> None:
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["text_encoder"] == ["easel.mini.text_encoder", "MiniTextEncoder"]
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]
    if tiny_preset == "tiny":
        assert index["unet"] == index["sr_unet"] == ["diffusers", "UNet2DConditionModel"]
    else:  # the CPU structures: a 32x32 UNet (shipped) or patch transformer, no SR stage
        unet = tiny_preset.startswith("tiny-cpu")
        base = "UNet2DConditionModel" if unet else "PixArtTransformer2DModel"
        assert index["unet"] == ["diffusers", base]
        assert index["sr_unet"] == index["sr_scheduler"] == [None, None]
        assert tiny_pipe.sr_unet is None and tiny_pipe.unet.config.sample_size == 32
    fresh = build_random_pipeline(seed=0, preset=tiny_preset)
    for a, b in zip(fresh.unet.parameters(), tiny_pipe.unet.parameters(), strict=True):
        assert torch.equal(a, b)


def test_output_contract_and_seed_reproduction(tiny_pipe: EaselMiniPipeline) -> None:
    kw: dict[str, Any] = {"num_inference_steps": 2, "width": 96, "height": 80,
                          "sr_num_inference_steps": 2}
    out = tiny_pipe(["a red circle", "two blue stars"], generator=_gens(1, 2), **kw)
    images = out.images
    assert isinstance(images, np.ndarray)
    assert images.shape == (2, 80, 96, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    again = tiny_pipe(["a red circle", "two blue stars"], generator=_gens(1, 2), **kw).images
    assert np.array_equal(images, again)
    # Image i depends on prompt i and generator i only, not on its neighbours in the batch.
    alone = tiny_pipe(["two blue stars"], generator=_gens(2), **kw).images
    np.testing.assert_allclose(alone[0], images[1], atol=1e-4)
    other = tiny_pipe(["a red circle", "two blue stars"], generator=_gens(3, 2), **kw).images
    assert not np.allclose(other[0], images[0])


def test_default_size_and_negative_prompt(tiny_pipe: EaselMiniPipeline) -> None:
    gens = _gens(5)
    base = tiny_pipe("a red circle", num_inference_steps=2, sr_num_inference_steps=1,
                     generator=gens).images
    assert base.shape == (1, 1024, 1024, 3)
    neg = tiny_pipe("a red circle", negative_prompt="red", num_inference_steps=2,
                    sr_num_inference_steps=1, guidance_scale=7.0, generator=_gens(5),
                    width=256, height=256).images
    plain = tiny_pipe("a red circle", num_inference_steps=2, sr_num_inference_steps=1,
                      guidance_scale=7.0, generator=_gens(5), width=256, height=256).images
    assert neg.shape == plain.shape and not np.allclose(neg, plain)


def test_callback_on_step_end(tiny_pipe: EaselMiniPipeline) -> None:
    calls: list[tuple[int, int]] = []

    def cb(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        assert pipe is tiny_pipe and set(kwargs) == {"latents"}
        calls.append((i, int(t)))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    kw: dict[str, Any] = {"num_inference_steps": 3, "width": 64, "height": 64,
                          "sr_num_inference_steps": 1}
    out = tiny_pipe("a sun", generator=_gens(0), callback_on_step_end=cb, **kw).images
    assert [i for i, _ in calls] == [0, 1, 2]
    ref = tiny_pipe("a sun", generator=_gens(0), **kw).images
    assert not np.allclose(out, ref)  # the returned latents were used


def test_cpu_preset_fits_the_shipping_budget() -> None:
    p = models.PRESETS["cpu"]
    n = sum(sum(x.numel() for x in m.parameters())
            for m in (models.text_encoder(p, 200), models.base_model(p)))
    assert models.sr_unet(p) is None
    assert n * 2 <= 20e6  # shipped in fp16: at most 20 MB in the repository


def test_full_preset_fits_the_size_budget() -> None:
    p = models.PRESETS["full"]
    n = sum(
        sum(x.numel() for x in m.parameters())
        for m in (models.text_encoder(p, 200), models.base_unet(p), models.sr_unet(p))
    )
    assert n * 4 <= 41e6  # fp32 bytes: the whole cascade stays within ~40 MB
