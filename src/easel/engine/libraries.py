"""Settings of the libraries the engine drives (diffusers, transformers)."""

from __future__ import annotations


def quiet_libraries() -> None:
    """diffusers/transformers progress bars and notices would drown easel's own output."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
