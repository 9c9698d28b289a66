from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from examples.mini import checker, data, probe
from examples.mini.train import Checkpoint
from PIL import Image

from easel.mini.pipeline import build_random_pipeline


def test_the_probe_asks_each_shape_in_each_colour() -> None:
    asked = probe.scenes()
    assert len(asked) == len(data.SHAPES) * len(probe.COLOURS)
    assert {s.objects[0].shape for s in asked} == set(data.SHAPES)
    assert all(f" {s.objects[0].shape} in the centre" in s.caption for s in asked)


def test_the_probe_judges_the_generators_own_renders_right() -> None:
    """The verdict it counts is the checker's: ground-truth renders of its scenes pass."""
    for scene in probe.scenes():
        assert checker.check(data.render(scene, 96), scene) == {"colour": True, "shape": True}


def test_the_probe_runs_on_a_saved_model_and_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    build_random_pipeline(seed=0, preset="tiny-cpu-pooled").save_pretrained(model)
    other = build_random_pipeline(seed=1, preset="tiny-cpu-pooled")
    run = tmp_path / "run"
    run.mkdir()
    Checkpoint(run).save({"modules": {"unet": other.unet.state_dict()}})
    # Two sampling steps: what is tested is the drawing and judging, not the tiny weights.
    probe.main(["--model", str(model), "--image", str(tmp_path / "p.png"), "--steps", "2"])
    probe.main(["--model", str(model), "--run", str(run), "--image", str(tmp_path / "q.png"),
                "--steps", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("shapes right: ") and line.endswith(" of 36") for line in lines)
    assert len(lines) == 2
    picture = np.asarray(Image.open(tmp_path / "p.png"))
    assert picture.shape == (96 * 4, 96 * len(data.SHAPES), 3)
    raw = np.asarray(Image.open(tmp_path / "q.png"))  # drawn by the checkpoint's weights
    assert raw.shape == picture.shape and not np.array_equal(raw, picture)
    with pytest.raises(SystemExit):  # a folder without a checkpoint is named, not a traceback
        probe.main(["--model", str(model), "--run", str(tmp_path)])
    assert "checkpoint.pt does not exist" in capsys.readouterr().err
