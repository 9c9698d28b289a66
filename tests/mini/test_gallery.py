from __future__ import annotations

from pathlib import Path

from examples.mini import gallery
from PIL import Image


def test_the_gallery_draws_each_prompt_and_prints_the_markdown_that_shows_it(
    tiny_dir: Path, tmp_path: Path, capsys: object
) -> None:
    out = tmp_path / "docs" / "images"
    gallery.main(["--model", str(tiny_dir), "--out", str(out), "--seed", "3"])
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    for i, prompt in enumerate(gallery.PROMPTS):
        path = out / f"mini-{gallery.slug(prompt)}.png"
        assert Image.open(path).size == (256, 256)
        assert f"![{prompt}](images/{path.name})" in printed
        assert f"`{prompt}` (seed {3 + i})" in printed
