from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from examples.mini import data, probe
from PIL import Image

from easel.mini.pipeline import build_random_pipeline


def test_the_probe_asks_each_shape_in_each_colour() -> None:
    asked = probe.captions()
    assert len(asked) == len(data.SHAPES) * len(probe.COLOURS)
    assert {shape for _, shape in asked} == set(data.SHAPES)
    assert all(f" {shape} in the centre" in caption for caption, shape in asked)


def test_the_probe_judges_the_generators_own_renders_right() -> None:
    """The verdict it counts is the checker's: ground-truth renders of its captions pass."""
    for caption, shape in probe.captions():
        colour = caption.split()[2]
        scene = data.Scene("single", "plain white", caption,
                           (data.SceneObject(shape, colour, "big", 0.5, 0.5, "centre"),))
        assert probe.drawn_shape(data.render(scene, 96)) == shape


def test_the_probe_runs_on_a_saved_model_and_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    model = tmp_path / "model"
    build_random_pipeline(seed=0, preset="tiny-cpu-pooled").save_pretrained(model)
    other = build_random_pipeline(seed=1, preset="tiny-cpu-pooled")
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"modules": {"unet": other.unet.state_dict()}}, checkpoint)
    probe.main(["--model", str(model), "--image", str(tmp_path / "p.png")])
    probe.main(["--model", str(model), "--checkpoint", str(checkpoint), "--image",
                str(tmp_path / "q.png")])
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("shapes right: ") and line.endswith(" of 36") for line in lines)
    assert len(lines) == 2
    picture = np.asarray(Image.open(tmp_path / "p.png"))
    assert picture.shape == (96 * 4, 96 * len(data.SHAPES), 3)
    raw = np.asarray(Image.open(tmp_path / "q.png"))  # drawn by the checkpoint's weights
    assert raw.shape == picture.shape and not np.array_equal(raw, picture)
