"""The held-out judge: its table, its breakdown by kind of prompt, and its JSON record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from examples.mini import data, evaluate

from easel.mini.pipeline import build_random_pipeline


def test_the_ground_truth_scores_by_kind_add_up_to_the_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    evaluate.main(["--ground-truth", "--n", "20", "--json", str(out)])
    record = json.loads(out.read_text())
    kinds = [s.kind for s in data.heldout_scenes(20)]
    assert list(record["by_kind"]) == list(dict.fromkeys(kinds))
    for kind, table in record["by_kind"].items():
        assert table["overall"]["n"] == kinds.count(kind)
    for attr, row in record["accuracy"].items():
        if attr == "overall" or row["accuracy"] is None:
            continue
        parts = [t[attr] for t in record["by_kind"].values() if t.get(attr, {}).get("n")]
        assert sum(p["n"] for p in parts) == row["n"]
        right = sum(round(p["accuracy"] * p["n"]) for p in parts if p["accuracy"] is not None)
        assert right == round(row["accuracy"] * row["n"])
    # The generator's own singles are judged right: the checker's ceiling, printed per kind.
    assert record["by_kind"]["single"]["colour"]["accuracy"] == 1.0
    printed = capsys.readouterr().out
    assert "by kind of prompt:" in printed and "\nsingle    colour " in printed


def test_a_saved_model_is_judged_and_timed(tmp_path: Path) -> None:
    model = tmp_path / "model"
    build_random_pipeline(seed=0, preset="tiny-cpu-pooled").save_pretrained(model)
    out = tmp_path / "eval.json"
    evaluate.main(["--model", str(model), "--n", "8", "--steps", "2", "--batch", "4",
                   "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["accuracy"]["overall"]["n"] == 8
    assert (record["steps"], record["batch"]) == (2, 4) and record["seconds_per_image"] > 0
    assert sum(t["overall"]["n"] for t in record["by_kind"].values()) == 8
