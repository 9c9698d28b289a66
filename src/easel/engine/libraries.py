"""Settings of the libraries the engine drives (diffusers, transformers, torchao)."""

from __future__ import annotations

import logging


def quiet_libraries() -> None:
    """diffusers/transformers progress bars and notices would drown easel's own output."""
    # torchao (EASEL_WEIGHT_QUANT) is imported by diffusers' quantizers: on a machine without
    # CUDA it reports each CUDA kernel it cannot load, and torch each of its enums it registers.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
