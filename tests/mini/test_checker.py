"""The checker is validated on ground-truth renders: it must (nearly) always agree with them."""

from __future__ import annotations

import numpy as np
import pytest
from examples.mini import checker, data


def _heldout(kind: str, n: int) -> list[data.Scene]:
    return [s for s in data.heldout_scenes(200) if s.kind == kind][:n]


def test_checker_scores_ground_truth_high() -> None:
    scenes = _heldout("single", 25) + _heldout("count", 15) + _heldout("relation", 15)
    verdicts = [checker.check(data.render(s, 256), s) for s in scenes]
    table = checker.summarize(verdicts)
    for attr in ("colour", "position", "count", "shape"):
        assert table[attr]["accuracy"] >= 0.9, (attr, table)


def test_checker_accepts_float_images_and_flags_wrong_ones() -> None:
    scene = _heldout("single", 1)[0]
    img = data.render(scene, 256).astype(np.float32) / 255
    assert all(checker.check(img, scene).values())
    blank = np.full((256, 256, 3), 0.5, np.float32)
    assert not any(checker.check(blank, scene).values())


def test_count_by_connected_components() -> None:
    for scene in _heldout("count", 6):
        assert len(checker.segment(data.render(scene, 256))) == scene.count


def test_shape_classifier_trains_on_the_fly() -> None:
    net = checker.train_shape_classifier(n_per_class=24, steps=120, seed=3)
    x, y = checker._training_masks(8, seed=99)
    import torch

    with torch.no_grad():
        pred = net(torch.from_numpy(x)).argmax(dim=1).numpy()
    assert (pred == y).mean() > 0.6


def test_ocr_reads_ground_truth_words() -> None:
    scenes = _heldout("word", 6)
    if not checker.ocr_available():
        assert checker.check(data.render(scenes[0], 256), scenes[0]) == {"word": None}
        pytest.skip("tesseract is not installed")
    hits = [checker.check(data.render(s, 256), s)["word"] for s in scenes]
    assert sum(bool(h) for h in hits) >= 4


def test_ocr_missing_is_reported_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checker, "ocr_available", lambda: False)
    scene = _heldout("word", 1)[0]
    verdict = checker.check(data.render(scene, 256), scene)
    assert verdict == {"word": None}
    table = checker.summarize([verdict])
    assert table["word"]["accuracy"] is None and "unavailable" in checker.format_table(table)
