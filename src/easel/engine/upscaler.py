"""Upscaling: a transformers super-resolution model (Swin2SR) enlarging input images, tile by
tile, so that the memory one call takes is bounded by the tile, not by the image."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easel.domain.errors import CancelledError
from easel.domain.generation import EngineBatch

log = logging.getLogger(__name__)

# The model types easel loads as upscalers (a folder's config.json says which it holds).
UPSCALER_MODEL_TYPES = ("swin2sr",)
# Input pixels per tile side, and the context each tile sees past its edges: Swin2SR's windows
# (8 px) see their neighbours through the shifted windows of every layer, so a tile's border
# pixels are drawn with a margin of real context that is cropped away. On the full-size
# architecture, 32 px of context leaves tiles equal to the whole image but for rounding (one
# 8-bit level at most, 0.0001 on average; 16 px: 0.006; bench/upscale_seams.py).
TILE = 512
CONTEXT = 32

TileDone = Callable[[int, int], None]  # (tiles done, tiles in all)


def is_upscaler_folder(path: Path) -> bool:
    """A transformers model folder (config.json, no model_index.json) of an upscaler type."""
    config = path / "config.json"
    if (path / "model_index.json").exists() or not config.is_file():
        return False
    try:
        model_type = json.loads(config.read_text("utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return False
    return model_type in UPSCALER_MODEL_TYPES


class Upscaler:
    """A loaded super-resolution model. It answers what the engine's cache of pipelines asks of
    one (`set_progress_bar_config`), and enlarges batches of equally sized images."""

    def __init__(self, model: Any, tile: int = TILE, context: int = CONTEXT) -> None:
        self.model = model
        self.scale = int(model.config.upscale)
        self.window = int(model.config.window_size)
        self.tile = tile
        self.context = context

    @classmethod
    def from_pretrained(cls, path: Path, dtype: torch.dtype, device: str) -> Upscaler:
        from transformers import Swin2SRForImageSuperResolution

        model = Swin2SRForImageSuperResolution.from_pretrained(str(path), dtype=dtype)
        model.to(device).eval()
        return cls(model)

    def set_progress_bar_config(self, **_: Any) -> None:
        """Nothing to configure: tiles report through the engine's progress."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The (top, left, bottom, right) input regions that cover an image, in order."""
        return [(top, left, min(top + self.tile, height), min(left + self.tile, width))
                for top in range(0, height, self.tile) for left in range(0, width, self.tile)]

    def enlarge(self, images: np.ndarray, done: TileDone | None = None,
                cancel: threading.Event | None = None) -> np.ndarray:
        """Images (n, h, w, 3 uint8, one size) at `scale` times each side, as (n, h*s, w*s, 3)
        uint8 (a quarter of the memory of floats at the largest sizes). Every image's tile at
        one place runs in one forward pass."""
        count, height, width, _ = images.shape
        s = self.scale
        out = np.empty((count, height * s, width * s, 3), np.uint8)
        regions = self.tiles(height, width)
        for index, (top, left, bottom, right) in enumerate(regions):
            if cancel is not None and cancel.is_set():
                raise CancelledError()
            # The tile with its context, clamped to the image.
            ctop, cleft = max(0, top - self.context), max(0, left - self.context)
            cbottom = min(height, bottom + self.context)
            cright = min(width, right + self.context)
            enlarged = self._forward(images[:, ctop:cbottom, cleft:cright])
            out[:, top * s:bottom * s, left * s:right * s] = enlarged[
                :, (top - ctop) * s:(bottom - ctop) * s, (left - cleft) * s:(right - cleft) * s]
            if done is not None:
                done(index + 1, len(regions))
        return out

    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        """One pass: the tiles mirrored out to a multiple of the model's window (as its image
        processor pads), enlarged, cropped back and quantised. Out of memory propagates: the
        engine frees memory and fails the batch."""
        _, height, width, _ = pixels.shape
        pad_h, pad_w = -height % self.window, -width % self.window
        padded = np.pad(pixels, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
        batch = torch.from_numpy(padded).to(self.device).permute(0, 3, 1, 2)
        batch = batch.to(self.dtype) / 255.0
        with torch.inference_mode():
            result = self.model(pixel_values=batch).reconstruction
        result = result[:, :, :height * self.scale, :width * self.scale]
        quantised = (result.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        return quantised.permute(0, 2, 3, 1).cpu().numpy()


def upscale_batch(upscaler: Upscaler, batch: EngineBatch, done: TileDone | None = None,
                  cancel: threading.Event | None = None) -> np.ndarray:
    """The batch's inputs at its size, (n, height, width, 3) floats in [0, 1]. A factor other
    than the model's own resamples its output (Lanczos): down from x4 for x2 and x3, which keeps
    the model's detail, or up past what it does."""
    inputs = np.stack([np.asarray(batch.inputs[spec.init]) for spec in batch.images
                       if spec.init is not None])
    enlarged = upscaler.enlarge(inputs, done, cancel)
    if enlarged.shape[1:3] != (batch.height, batch.width):
        from PIL import Image

        log.debug("resampling x%d output to %dx%d", upscaler.scale, batch.width, batch.height)
        enlarged = np.stack([np.asarray(Image.fromarray(image).resize(
            (batch.width, batch.height), Image.Resampling.LANCZOS)) for image in enlarged])
    return enlarged.astype(np.float32) / 255.0
