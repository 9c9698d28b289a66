"""The openai SDK, its oldest supported line (1.x) and the newest, iterating
`images.generate(stream=True, partial_images=2)` against easel on the tiny real pipelines:
two partial images, then the image, each a decodable image of the size asked for."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.dialects.conftest import KEY, run_client
from tests.server_harness import Server


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real diffusers engine on the stand-ins: Fast is easel/tiny-flux2, 4 steps."""
    srv = Server(tmp_path_factory.mktemp("stream"), engine="tiny", EASEL_API_KEYS=KEY,
                 EASEL_STAND_IN="tiny").start()
    yield srv
    srv.stop()


def pixels(event: dict[str, Any]) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(event["b64_json"])))
    assert image.size == (64, 48), image.size
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("sdk", ["openai-1", "openai"])
def test_the_sdk_iterates_two_partial_images_and_the_image(
    tiny: Server, sdks: dict[str, Path], sdk: str,
) -> None:
    out = run_client(sdks[sdk], "openai_client.py", {
        "url": tiny.url, "key": KEY, "call": "stream",
        "kwargs": {"model": "google/imagen-4.0-fast-generate-001", "prompt": "a red circle",
                   "size": "64x48", "partial_images": 2, "output_format": "png"}})
    assert out["ok"], out
    events = out["events"]
    assert [e["class"] for e in events] == ["ImageGenPartialImageEvent"] * 2 + [
        "ImageGenCompletedEvent"], [e["class"] for e in events]
    assert [e["partial_image_index"] for e in events[:2]] == [0, 1]
    first, second, final = (pixels(e) for e in events)
    assert np.abs(first - second).mean() > 1  # the prediction moved between the two
    assert np.abs(second - final).mean() > 0  # and the image is not a partial one
    assert np.abs(first - final).mean() > 1
