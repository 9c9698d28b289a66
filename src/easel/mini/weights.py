"""Where the trained easel-mini weights ship: inside the package, so `pip install` carries them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

WEIGHTS_DIR = "weights"
# The tokenizer ships on its own too: the random-weight pipelines (tests, the tiny stand-in)
# use it without trained weights.
TOKENIZER_DIR = Path(str(resources.files("easel.mini").joinpath(WEIGHTS_DIR, "tokenizer")))


def mini_weights_dir() -> Path:
    """The packaged pipeline directory; FileNotFoundError until the weights are trained."""
    path = Path(str(resources.files("easel.mini").joinpath(WEIGHTS_DIR)))
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(
            f"easel-mini has no trained weights at {path} (train them from a checkout: "
            "`python -m examples.mini.train`)"
        )
    return path
