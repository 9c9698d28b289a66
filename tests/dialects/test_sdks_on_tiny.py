"""The official SDKs against easel on the tiny real pipelines, one server for all (a server
start costs seconds of CPU).

- openai, its oldest supported line (1.x) and the newest: iterating
  `images.generate(stream=True, partial_images=2)` (two partial images, then the image, each a
  decodable image of the size asked for), and `images.edit` (inpainting that keeps every pixel
  outside the mask, a stream, strength, refusals, several images on Fast).
- google-genai (1.75 and 3.6.1): Vertex's mask editing with `edit_image`, and the Gemini image
  API's editing (`generate_content` with images, a chat that edits its own picture).
- runware-sdk: outpainting (`outpaint` margins), the image kept and the new area drawn.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.dialects.conftest import KEY, run_client
from tests.edge.test_images_in import data_uri, half_mask, picture, png
from tests.edge.test_openai_edits import hole_mask
from tests.server_harness import QUICK_MINI, SMALL_SIZES, Server

RUNWARE_CLIENT = Path(__file__).parents[1] / "runware" / "clients" / "sdk.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real diffusers engine on each tier family's stand-in: Fast is easel/tiny-flux2,
    Standard easel/tiny-zimage, Ultra easel/tiny-qwenimage."""
    srv = Server(tmp_path_factory.mktemp("sdks-on-tiny"), engine="tiny", EASEL_API_KEYS=KEY,
                 EASEL_STAND_IN="tiny")
    # 16:9 at 128 x 64: a 64 x 64 picture outpainted by 64 pixels (Runware's margins step by 64).
    srv.overlay = SMALL_SIZES.replace('"16:9" = [64, 32]', '"16:9" = [128, 64]') + QUICK_MINI
    srv.start()
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
    # The other refusals, each in OpenAI's shape: tests/edge/test_openai_edits.py.


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

# -- Vertex mask editing: google-genai edit_image (Vertex mode) ---------------------------------

CAPABILITY = "imagen-3.0-capability-001"


def google_edit(tiny: Server, sdks: dict[str, Path], sdk: str = "google-genai-3",
                **spec: Any) -> Any:
    config = {"number_of_images": 1, "output_mime_type": "image/png", "add_watermark": False,
              "seed": 4, **spec.pop("config", {})}
    return run_client(sdks[sdk], "google_client.py", {
        "url": tiny.url, "key": KEY, "mode": "vertex", "call": "edit", "model": CAPABILITY,
        "prompt": "a red fox", "image": b64(picture()), "config": config, **spec})


def decoded_b64(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


@pytest.mark.parametrize("sdk", ["google-genai", "google-genai-3"])
def test_edit_image_inserts_into_the_mask_and_keeps_every_other_pixel(
    tiny: Server, sdks: dict[str, Path], sdk: str,
) -> None:
    out = google_edit(tiny, sdks, sdk, mask=b64(half_mask()),
                      config={"edit_mode": "EDIT_MODE_INPAINT_INSERTION"})
    assert out["ok"], out
    drawn = decoded_b64(out["images"][0])
    height, width = drawn.shape[:2]
    assert width > height  # no aspect ratio asked for: the input's shape (96x64)
    fitted = np.asarray(ImageOps.fit(picture(), (width, height),
                                     method=Image.Resampling.LANCZOS))
    half = width // 2
    assert np.array_equal(drawn[:, :half], fitted[:, :half])  # black in the mask: kept
    assert np.abs(drawn[:, half:].astype(int) - fitted[:, half:]).mean() > 5


def test_removal_outpainting_and_a_dilated_mask(tiny: Server, sdks: dict[str, Path]) -> None:
    removal = google_edit(tiny, sdks, prompt="", mask=b64(half_mask()),
                          config={"edit_mode": "EDIT_MODE_INPAINT_REMOVAL"})
    assert removal["ok"], removal
    grown = google_edit(tiny, sdks, mask=b64(half_mask()), dilation=0.2,
                        config={"edit_mode": "EDIT_MODE_OUTPAINT"})
    assert grown["ok"], grown
    drawn = decoded_b64(grown["images"][0])
    width = drawn.shape[1]
    fitted = np.asarray(ImageOps.fit(picture(), (width, drawn.shape[0]),
                                     method=Image.Resampling.LANCZOS))
    # Grown by a fifth of the longer side: the columns just left of the half are edited too.
    edge = slice(width // 2 - width // 8, width // 2)
    assert not np.array_equal(drawn[:, edge], fitted[:, edge])
    assert np.array_equal(drawn[:, : width // 4], fitted[:, : width // 4])
    whole = google_edit(tiny, sdks)  # RAW alone: the image redrawn from it
    assert whole["ok"] and len(whole["images"]) == 1, whole


def test_what_easel_cannot_do_is_refused_by_name(tiny: Server, sdks: dict[str, Path]) -> None:
    auto = google_edit(tiny, sdks, mask_mode="MASK_MODE_BACKGROUND",
                       config={"edit_mode": "EDIT_MODE_BGSWAP"})
    assert (auto["ok"], auto["code"], auto["status"]) == (False, 400, "INVALID_ARGUMENT"), auto
    assert "segmentation model" in auto["message"]
    # The other refusals, each in Google's shape: tests/edge/test_google_edits.py.


# -- the Gemini image API: generate_content with images, chats ----------------------------------

GEMINI_FAST, GEMINI_STANDARD = "gemini-2.5-flash-image", "gemini-3.1-flash-image"


def photo_b64(turned: int = 0) -> str:
    return base64.b64encode(png(picture().rotate(turned))).decode()


def gemini_call(tiny: Server, sdks: dict[str, Path], sdk: str = "google-genai-3",
                **spec: Any) -> Any:
    return run_client(sdks[sdk], "gemini_client.py", {"url": tiny.url, "key": KEY,
                                                      "mode": "gemini", **spec})


def image_of(out: dict[str, Any]) -> dict[str, Any]:
    assert out["ok"], out
    parts = [p for p in out["candidates"][0]["parts"] if "image" in p]
    assert len(parts) == 1, out
    return dict(parts[0])


@pytest.mark.parametrize(("sdk", "mode"), [("google-genai", "gemini"),
                                         ("google-genai-3", "vertex")])
def test_fast_is_shown_every_image_of_the_turn(
    tiny: Server, sdks: dict[str, Path], sdk: str, mode: str,
) -> None:
    out = gemini_call(tiny, sdks, sdk, model=GEMINI_FAST, prompt="the two of them side by side",
                      images=[photo_b64(), photo_b64(180)], mode=mode)
    width, height = image_of(out)["size"]
    assert width > height  # no aspect ratio asked for: the first image's shape (96x64)
    text = next(p["text"] for p in out["candidates"][0]["parts"] if "text" in p)
    assert "edited from the image(s) you sent" in text  # says what was done


def test_a_three_turn_chat_edits_the_same_picture_twice(
    tiny: Server, sdks: dict[str, Path],
) -> None:
    """The SDK resends the whole history, the model turns' images included: each turn edits
    the picture the turn before returned."""
    out = gemini_call(tiny, sdks, call="chat", model=GEMINI_FAST, prompt="a red fox in snow",
                      then=["make it night", "add a full moon"],
                      config={"image_config": {"aspect_ratio": "16:9"}})
    width, height = image_of(out)["size"]
    assert width > height


def test_standard_redraws_one_image_and_refuses_two(tiny: Server, sdks: dict[str, Path]) -> None:
    one = gemini_call(tiny, sdks, model=GEMINI_STANDARD, prompt="the same fox at night",
                      images=[photo_b64()])
    assert image_of(one)["size"][0] > image_of(one)["size"][1]
    two = gemini_call(tiny, sdks, model=GEMINI_STANDARD, prompt="both",
                      images=[photo_b64(), photo_b64(90)])
    assert (two["code"], two["status"]) == (400, "INVALID_ARGUMENT"), two
    assert "contents[0].parts[1].inlineData.data" in two["message"]
    assert "cannot combine several images" in two["message"]


def test_an_image_easel_cannot_read_is_refused_naming_the_part(tiny: Server) -> None:
    url = f"{tiny.url}/v1beta/models/{GEMINI_FAST}:generateContent"
    body = {"contents": [{"role": "user", "parts": [
        {"fileData": {"fileUri": "gs://bucket/photo.png", "mimeType": "image/png"}},
        {"text": "make it red"}]}]}
    reply = httpx.post(url, headers={"x-goog-api-key": KEY}, json=body, timeout=60)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["details"][0]["fieldViolations"][0]["field"] == \
        "contents[0].parts[0].fileData.fileUri"
    garbage = {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"GIF89a").decode()}},
        {"text": "make it red"}]}]}
    reply = httpx.post(url, headers={"x-goog-api-key": KEY}, json=garbage, timeout=60)
    assert reply.status_code == 400 and "is not a PNG, JPEG or WEBP" in reply.text
    private = {"contents": [{"role": "user", "parts": [
        {"fileData": {"fileUri": "http://10.0.0.9/photo.png", "mimeType": "image/png"}},
        {"text": "make it red"}]}]}
    reply = httpx.post(url, headers={"x-goog-api-key": KEY}, json=private, timeout=60)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["details"][0]["fieldViolations"][0]["field"] == \
        "contents[0].parts[0].fileData.fileUri"
    many = {"contents": [{"role": "user", "parts": [
        *({"inlineData": {"mimeType": "image/png", "data": photo_b64()}} for _ in range(15)),
        {"text": "all of them"}]}]}
    reply = httpx.post(url, headers={"x-goog-api-key": KEY}, json=many, timeout=60)
    assert reply.status_code == 400 and "at most 14 images" in reply.text, reply.text


# -- Runware's outpaint, through runware-sdk ------------------------------------------------------

def test_the_runware_sdk_outpaints_keeping_its_image_and_drawing_the_new_area(
    tiny: Server, sdks: dict[str, Path],
) -> None:
    seed = np.asarray(picture(64, 64))
    task = {"model": "google:2@1", "positivePrompt": "the coast goes on to the right",
            "seedImage": data_uri(png(picture(64, 64))), "outpaint": {"right": 64},
            "width": 128, "height": 64, "outputType": "base64Data", "outputFormat": "PNG"}
    spec = {"transport": "rest", "url": f"{tiny.url}/v1", "apiKey": KEY, "task": task}
    out = run_client(sdks["runware-sdk"], str(RUNWARE_CLIENT), spec)
    assert "images" in out, out
    drawn = Image.open(io.BytesIO(base64.b64decode(out["images"][0]["imageBase64Data"])))
    assert drawn.size == (128, 64)
    got = np.asarray(drawn.convert("RGB"), dtype=np.int16)
    assert np.array_equal(got[:, :64], seed)  # the image, kept exactly
    assert np.abs(got[:, 64:] - seed[:, -1:]).mean() > 5  # the new area drawn, not smeared


# -- upscaling: Runware's two SDKs and google-genai's upscale_image, on the tiny Swin2SR -------

UPSCALER = "imagen-4.0-upscale-preview"


@pytest.mark.parametrize(("transport", "factor"), [("rest", 2), ("websocket", 4)])
def test_the_runware_sdk_upscales_by_the_factor_asked(
    tiny: Server, sdks: dict[str, Path], transport: str, factor: int,
) -> None:
    task = {"taskType": "upscale", "model": "runware:504@1", "upscaleFactor": factor,
            "inputs": {"image": data_uri(png(picture()))}, "outputType": "base64Data",
            "outputFormat": "PNG", "includeCost": True}
    url = f"{tiny.url}/v1" if transport == "rest" else tiny.ws_url
    spec = {"transport": transport, "url": url, "apiKey": KEY, "task": task}
    out = run_client(sdks["runware-sdk"], str(RUNWARE_CLIENT), spec)
    assert "images" in out, out
    (item,) = out["images"]
    assert item["taskType"] == "upscale" and item["cost"] > 0, item
    upscaled = Image.open(io.BytesIO(base64.b64decode(item["imageBase64Data"])))
    assert upscaled.size == (96 * factor, 64 * factor)


def test_the_legacy_runware_sdk_uploads_a_local_file_and_upscales_it(tiny: Server) -> None:
    """runware 0.5.24's imageUpscale: it uploads the file (imageUpload), then names its
    imageUUID as inputImage, and waits for an item of the task with an imageUUID."""
    from tests.sdk_venvs import sdk_python

    spec = {"url": tiny.ws_url, "apiKey": KEY,
            "upscale": {"image": base64.b64encode(png(picture())).decode(), "factor": 4}}
    out = run_client(sdk_python("runware-legacy"),
                     str(Path(__file__).parents[1] / "runware" / "clients" / "legacy_ws.py"),
                     spec)
    assert "images" in out, out
    (image,) = out["images"]
    assert image["taskType"] == "imageUpscale" and image["cost"] > 0, image
    assert Image.open(io.BytesIO(base64.b64decode(image["imageBase64Data"]))).size == (384, 256)


@pytest.mark.parametrize(("sdk", "factor"), [("google-genai", "x2"), ("google-genai-3", "x4")])
def test_google_genai_upscale_image(tiny: Server, sdks: dict[str, Path], sdk: str,
                                    factor: str) -> None:
    out = run_client(sdks[sdk], "google_client.py", {
        "url": tiny.url, "key": KEY, "mode": "vertex", "call": "upscale", "model": UPSCALER,
        "image": b64(picture()), "factor": factor,
        "config": {"output_mime_type": "image/png", "include_rai_reason": True}})
    assert out["ok"], out
    (image,) = out["images"]
    scale = int(factor[1:])
    assert image["mime"] == "image/png"
    upscaled = Image.open(io.BytesIO(base64.b64decode(image["b64"])))
    assert upscaled.size == (96 * scale, 64 * scale)


def test_upscale_image_on_a_model_that_draws_is_refused_by_name(
    tiny: Server, sdks: dict[str, Path],
) -> None:
    out = run_client(sdks["google-genai-3"], "google_client.py", {
        "url": tiny.url, "key": KEY, "mode": "vertex", "call": "upscale",
        "model": "imagen-4.0-generate-001", "image": b64(picture()), "factor": "x2"})
    assert (out["ok"], out["code"], out["status"]) == (False, 400, "INVALID_ARGUMENT"), out
    assert "does not upscale; name an upscaler: imagen-4.0-upscale-preview" in out["message"]
