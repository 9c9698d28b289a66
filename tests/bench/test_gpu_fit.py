"""bench/gpu_fit.py in its --tiny mode: the harness runs each tier under each setting on the
CPU, reports what needs CUDA as skipped with the reason, and int8 really shrinks the denoiser."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.test_gpu_harness import load


def test_the_fit_harness_measures_each_tier_and_setting_on_the_tiny_families(
    tmp_path: Path, model_cache: Path
) -> None:
    fit = load("gpu_fit")
    out = tmp_path / "fit.json"
    settings = ["default", "model-offload", "int8", "sequential-offload", "nf4-all"]
    fit.main(["--tiny", "--tiers", "fast,ultra", "--settings", ",".join(settings), "--size",
              "64", "--steps", "2", "--cache", str(model_cache), "--out", str(out)])
    rows = {(r["tier"], r["setting"]): r for r in json.loads(out.read_text())}
    assert set(rows) == {(t, s) for t in ("fast", "ultra") for s in settings}
    for tier in ("fast", "ultra"):
        default, offload, int8 = (rows[tier, s] for s in ("default", "model-offload", "int8"))
        for measured in (default, offload, int8):
            assert measured["skipped"] is None and not measured["oom"]
            assert measured["seconds_per_image"] > 0 and measured["steps"] == 2
            assert measured["peak_allocated_gib"] is None  # no GPU: nothing claimed
        assert offload["applied"] == ["offload=model"]
        assert int8["applied"] == ["weights=int8(denoiser)"]
        assert int8["denoiser_gib"] < 0.5 * default["denoiser_gib"]
        assert "needs a CUDA device" in rows[tier, "sequential-offload"]["skipped"]
        assert "needs a CUDA device" in rows[tier, "nf4-all"]["skipped"]
    assert rows["fast", "default"]["source"] == "easel/tiny-flux2"
    assert rows["ultra", "default"]["backend"] == "qwen-image"
