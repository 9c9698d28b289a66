"""The openai SDK, its oldest supported line (1.x) and the newest, against easel on the tiny
real pipelines: iterating `images.generate(stream=True, partial_images=2)` (two partial images,
then the image, each a decodable image of the size asked for), and `images.edit` (inpainting
that keeps every pixel outside the mask, a stream, strength, refusals)."""

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
from tests.edge.test_images_in import picture, png
from tests.edge.test_openai_edits import hole_mask
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


# -- images.edit: the SDKs' multipart bodies, drawn by the tiny real pipelines --------------------

STANDARD, ULTRA = "google/imagen-4.0-generate-001", "google/imagen-4.0-ultra-generate-001"


def b64(image: Image.Image) -> str:
    return base64.b64encode(png(image)).decode()


def edited(tiny: Server, python: Path, **spec: Any) -> Any:
    return run_client(python, "openai_client.py", {
        "url": tiny.url, "key": KEY, "call": "edit", "image": b64(picture()), **spec})


def decoded(item: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).convert("RGB"))


@pytest.mark.parametrize("sdk", ["openai-1", "openai"])
def test_the_sdk_inpaints_the_masks_transparent_pixels_and_keeps_the_rest(
    tiny: Server, sdks: dict[str, Path], sdk: str,
) -> None:
    out = edited(tiny, sdks[sdk], mask=b64(hole_mask()), kwargs={
        "model": STANDARD, "prompt": "a red fox", "response_format": "b64_json",
        "output_format": "png"})
    assert out["ok"], out
    response = out["response"]
    width, height = map(int, response["size"].split("x"))
    assert width > height  # no size asked for: the input's shape (96x64)
    drawn = decoded(response["data"][0])
    assert drawn.shape == (height, width, 3)
    fitted = np.asarray(ImageOps.fit(picture(), (width, height),
                                     method=Image.Resampling.LANCZOS))
    half = width // 2
    assert np.array_equal(drawn[:, :half], fitted[:, :half])  # opaque in the mask: kept exactly
    assert np.abs(drawn[:, half:].astype(int) - fitted[:, half:]).mean() > 5  # the hole: new


def test_the_sdk_streams_an_edit_and_a_strength_sets_how_far_it_goes(
    tiny: Server, sdks: dict[str, Path],
) -> None:
    python = sdks["openai"]
    out = edited(tiny, python, stream=True, kwargs={
        "model": STANDARD, "prompt": "a red fox", "partial_images": 1, "output_format": "png"})
    assert out["ok"], out
    assert [e["class"] for e in out["events"]] == ["ImageEditPartialImageEvent",
                                                   "ImageEditCompletedEvent"]
    assert out["events"][1]["type"] == "image_edit.completed"

    def at(strength: float) -> np.ndarray:
        """On the Ultra tier's tiny Qwen-Image, whose untrained VAE cannot give an image
        back: "the input" is the pipeline's own round trip of it (strength 0.01)."""
        done = edited(tiny, python, extra_body={"strength": strength, "seed": 5}, kwargs={
            "model": ULTRA, "prompt": "a red fox", "response_format": "b64_json",
            "output_format": "png"})
        assert done["ok"], done
        return decoded(done["response"]["data"][0]).astype(int)

    reference = at(0.01)
    near, far = (float(np.abs(at(s) - reference).mean()) for s in (0.1, 0.9))
    assert near * 4 < far, (near, far)


def test_the_sdk_reads_each_refusal_naming_the_part(tiny: Server, sdks: dict[str, Path]) -> None:
    python = sdks["openai"]
    many = edited(tiny, python, images=[b64(picture())] * 17,
                  kwargs={"model": STANDARD, "prompt": "x"})
    assert (many["status"], many["type"], many["param"]) == (
        400, "BadRequestError", "image[16]"), many
    other_size = edited(tiny, python, mask=b64(hole_mask(48, 32)),
                        kwargs={"model": STANDARD, "prompt": "x"})
    assert (other_size["status"], other_size["param"]) == (400, "mask"), other_size
    assert "same size" in other_size["message"]


def test_the_sdk_sends_several_images_for_fast_to_edit_by_instruction(
    tiny: Server, sdks: dict[str, Path],
) -> None:
    """A list of images (the SDK's image[] parts) shown together to FLUX.2 [klein]."""
    out = edited(tiny, sdks["openai"], images=[b64(picture()), b64(picture().rotate(180))],
                 kwargs={"model": "google/imagen-4.0-fast-generate-001", "prompt": "a red fox",
                         "response_format": "b64_json", "output_format": "png"})
    assert out["ok"], out
    width, height = map(int, out["response"]["size"].split("x"))
    assert decoded(out["response"]["data"][0]).shape == (height, width, 3) and width > height
