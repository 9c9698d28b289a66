"""bench/gpu.py runs on CPU with the tiny families: the harness itself is tested in CI."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_harness_times_stock_and_easel_side_by_side(tmp_path: Path) -> None:
    gpu = load("gpu")
    out = tmp_path / "rows.json"
    gpu.main(
        [
            "--archs",
            "tiny-flux,tiny-sana",
            "--sizes",
            "64",
            "--batches",
            "1,2",
            "--repeats",
            "1",
            "--warmups",
            "0",
            "--fuse-qkv",
            "--out",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())
    assert {(r["arch"], r["runner"], r["batch"]) for r in rows} == {
        (a, runner, b)
        for a in ("tiny-flux", "tiny-sana")
        for runner in ("diffusers", "easel")
        for b in (1, 2)
    }
    for r in rows:
        assert r["seconds_per_image"] > 0 and r["images_per_second"] > 0
        stages = r["text_encode_s"] + r["denoise_s"] + r["vae_decode_s"]
        assert stages == pytest.approx(r["seconds_per_image"], rel=1e-6)
        assert r["text_encode_s"] > 0 and r["vae_decode_s"] > 0
        if r["runner"] == "easel":
            assert r["psnr_vs_diffusers_db"] >= 40  # every option used here is lossless
    assert any("fused-qkv" in r["options"] for r in rows if r["arch"] == "tiny-flux")


def test_full_size_configs_have_the_published_parameter_counts() -> None:
    import torch

    full = load("full_size")
    pipe_parts = {
        "flux-dev": (full._flux, 11_901_408_320),
        "flux-schnell": (full._flux, 11_891_178_560),
    }
    for arch, (builder, expected) in pipe_parts.items():
        # Count on the meta device: no memory is allocated for 12B parameters.
        original = full._materialise
        full._materialise = lambda module, device, dtype: module
        try:
            pipe = builder(arch == "flux-dev", "meta", torch.bfloat16)
        finally:
            full._materialise = original
        assert sum(p.numel() for p in pipe.transformer.parameters()) == expected
        assert sum(p.numel() for p in pipe.text_encoder_2.parameters()) == 4_762_310_656


# Published parameter counts of the 2026 defaults (transformer, text encoder, VAE), as counted
# from their config.json files: docs/catalog.md.
NEW_DEFAULT_COUNTS = {
    "flux2-klein-4b": (3_875_544_576, 4_022_468_096, 84_046_115),
    "z-image-turbo": (6_154_908_736, 4_022_468_096, 83_819_683),
    "qwen-image": (20_430_401_088, 8_292_166_656, 126_892_531),
}


@pytest.mark.parametrize("arch", sorted(NEW_DEFAULT_COUNTS))
def test_the_new_defaults_build_at_full_size_with_their_published_parameter_counts(
    arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = load("full_size")
    # On the meta device no memory is allocated for 20B parameters.
    monkeypatch.setattr(full, "_materialise", lambda module, device, dtype: module)
    pipe = full.NEW_DEFAULTS[arch]("meta", None)
    counts = tuple(sum(p.numel() for p in part.parameters())
                   for part in (pipe.transformer, pipe.text_encoder, pipe.vae))
    assert counts == NEW_DEFAULT_COUNTS[arch]
    assert arch in full.ARCHS


def test_materialised_modules_keep_their_real_buffers_and_take_the_dtype_at_once() -> None:
    """The rotary frequencies and normalisation statistics are computed as the module is made
    (allocating memory for them left whatever it held: a negative running variance draws NaN);
    the parameters come in the target dtype directly."""
    import torch
    from transformers import Qwen3Config, Qwen3Model

    full = load("full_size")
    config = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16)

    def make() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4),
                                   Qwen3Model(config))

    reference = make()
    module = full._materialise(full._on_meta(make), "cpu", torch.bfloat16)
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in module.parameters())
    for (name, got), (_, want) in zip(module.named_buffers(), reference.named_buffers(),
                                      strict=True):
        assert torch.equal(got.float(), want.to(got.dtype).float()), name
    assert torch.all(module[1].running_var == 1)
    assert torch.all(module[1].weight == 1) and torch.all(module[0].bias == 0)
