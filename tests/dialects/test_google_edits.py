"""Vertex's mask editing (`imagen-3.0-capability-001`, whose successor Google never shipped)
through google-genai's `edit_image`, unchanged, in Vertex mode (the only mode it edits in),
against easel on the tiny real pipelines: the RAW image, a user-provided MASK (white edited,
every other pixel kept exactly), each edit mode it serves, and the refusals in Google's shape."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.dialects.conftest import KEY, run_client
from tests.edge.test_images_in import half_mask, picture, png
from tests.server_harness import Server

MODEL = "imagen-3.0-capability-001"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real diffusers engine on the stand-ins: Standard is easel/tiny-zimage."""
    srv = Server(tmp_path_factory.mktemp("google-edits"), engine="tiny", EASEL_API_KEYS=KEY,
                 EASEL_STAND_IN="tiny").start()
    yield srv
    srv.stop()


def b64(image: Image.Image) -> str:
    return base64.b64encode(png(image)).decode()


def edit(tiny: Server, sdks: dict[str, Path], sdk: str = "google-genai-3", **spec: Any) -> Any:
    config = {"number_of_images": 1, "output_mime_type": "image/png", "add_watermark": False,
              "seed": 4, **spec.pop("config", {})}
    return run_client(sdks[sdk], "google_client.py", {
        "url": tiny.url, "key": KEY, "mode": "vertex", "call": "edit", "model": MODEL,
        "prompt": "a red fox", "image": b64(picture()), "config": config, **spec})


def decoded(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


@pytest.mark.parametrize("sdk", ["google-genai", "google-genai-3"])
def test_edit_image_inserts_into_the_mask_and_keeps_every_other_pixel(
    tiny: Server, sdks: dict[str, Path], sdk: str,
) -> None:
    out = edit(tiny, sdks, sdk, mask=b64(half_mask()),
               config={"edit_mode": "EDIT_MODE_INPAINT_INSERTION"})
    assert out["ok"], out
    drawn = decoded(out["images"][0])
    height, width = drawn.shape[:2]
    assert width > height  # no aspect ratio asked for: the input's shape (96x64)
    fitted = np.asarray(ImageOps.fit(picture(), (width, height),
                                     method=Image.Resampling.LANCZOS))
    half = width // 2
    assert np.array_equal(drawn[:, :half], fitted[:, :half])  # black in the mask: kept
    assert np.abs(drawn[:, half:].astype(int) - fitted[:, half:]).mean() > 5


def test_removal_outpainting_and_a_dilated_mask(tiny: Server, sdks: dict[str, Path]) -> None:
    removal = edit(tiny, sdks, prompt="", mask=b64(half_mask()),
                   config={"edit_mode": "EDIT_MODE_INPAINT_REMOVAL"})
    assert removal["ok"], removal
    grown = edit(tiny, sdks, mask=b64(half_mask()), dilation=0.2,
                 config={"edit_mode": "EDIT_MODE_OUTPAINT"})
    assert grown["ok"], grown
    drawn = decoded(grown["images"][0])
    width = drawn.shape[1]
    fitted = np.asarray(ImageOps.fit(picture(), (width, drawn.shape[0]),
                                     method=Image.Resampling.LANCZOS))
    # Grown by a fifth of the longer side: the columns just left of the half are edited too.
    edge = slice(width // 2 - width // 8, width // 2)
    assert not np.array_equal(drawn[:, edge], fitted[:, edge])
    assert np.array_equal(drawn[:, : width // 4], fitted[:, : width // 4])
    whole = edit(tiny, sdks)  # RAW alone: the image redrawn from it
    assert whole["ok"] and len(whole["images"]) == 1, whole


def test_what_easel_cannot_do_is_refused_by_name(tiny: Server, sdks: dict[str, Path]) -> None:
    auto = edit(tiny, sdks, mask_mode="MASK_MODE_BACKGROUND",
                config={"edit_mode": "EDIT_MODE_BGSWAP"})
    assert (auto["ok"], auto["code"], auto["status"]) == (False, 400, "INVALID_ARGUMENT"), auto
    assert "segmentation model" in auto["message"]
    style = edit(tiny, sdks, mask=b64(half_mask()), config={"edit_mode": "EDIT_MODE_STYLE"})
    assert style["code"] == 400 and "EDIT_MODE_STYLE is not served" in style["message"]
    other = edit(tiny, sdks, mask=b64(half_mask(48, 32)),
                 config={"edit_mode": "EDIT_MODE_INPAINT_INSERTION"})
    assert other["code"] == 400 and "same size" in other["message"]
