"""Editing on the Gemini image API (`generateContent` with images), through google-genai's
generate_content and chats, unchanged, against easel on the tiny real pipelines: the Fast model
(gemini-2.5-flash-image, FLUX.2 [klein]) shown every image of the turn, a chat's second turn
editing the image its first returned, the Standard model redrawing one image, and the
refusals in Google's shape."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dialects.conftest import KEY, run_client
from tests.edge.test_images_in import picture, png
from tests.server_harness import Server

FAST, STANDARD = "gemini-2.5-flash-image", "gemini-3.1-flash-image"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("gemini-edits"), engine="tiny", EASEL_API_KEYS=KEY,
                 EASEL_STAND_IN="tiny").start()
    yield srv
    srv.stop()


def b64(turned: int = 0) -> str:
    return base64.b64encode(png(picture().rotate(turned))).decode()


def call(tiny: Server, sdks: dict[str, Path], sdk: str = "google-genai-3", **spec: Any) -> Any:
    return run_client(sdks[sdk], "gemini_client.py", {"url": tiny.url, "key": KEY,
                                                      "mode": "gemini", **spec})


def image_of(out: dict[str, Any]) -> dict[str, Any]:
    assert out["ok"], out
    parts = [p for p in out["candidates"][0]["parts"] if "image" in p]
    assert len(parts) == 1, out
    return dict(parts[0])


@pytest.mark.parametrize(("sdk", "mode"), [("google-genai", "gemini"),
                                         ("google-genai-3", "gemini"),
                                         ("google-genai-3", "vertex")])
def test_fast_is_shown_every_image_of_the_turn(
    tiny: Server, sdks: dict[str, Path], sdk: str, mode: str,
) -> None:
    out = call(tiny, sdks, sdk, model=FAST, prompt="the two of them side by side",
               images=[b64(), b64(180)], mode=mode)
    width, height = image_of(out)["size"]
    assert width > height  # no aspect ratio asked for: the first image's shape (96x64)
    text = next(p["text"] for p in out["candidates"][0]["parts"] if "text" in p)
    assert "edited from the image(s) you sent" in text  # says what was done


def test_a_three_turn_chat_edits_the_same_picture_twice(
    tiny: Server, sdks: dict[str, Path],
) -> None:
    """The SDK resends the whole history, the model turns' images included: each turn edits
    the picture the turn before returned."""
    out = call(tiny, sdks, call="chat", model=FAST, prompt="a red fox in snow",
               then=["make it night", "add a full moon"],
               config={"image_config": {"aspect_ratio": "16:9"}})
    width, height = image_of(out)["size"]
    assert width > height


def test_standard_redraws_one_image_and_refuses_two(tiny: Server, sdks: dict[str, Path]) -> None:
    one = call(tiny, sdks, model=STANDARD, prompt="the same fox at night", images=[b64()])
    assert image_of(one)["size"][0] > image_of(one)["size"][1]
    two = call(tiny, sdks, model=STANDARD, prompt="both", images=[b64(), b64(90)])
    assert (two["code"], two["status"]) == (400, "INVALID_ARGUMENT"), two
    assert "contents[0].parts[1].inlineData.data" in two["message"]
    assert "cannot combine several images" in two["message"]


def test_an_image_easel_cannot_read_is_refused_naming_the_part(tiny: Server) -> None:
    url = f"{tiny.url}/v1beta/models/{FAST}:generateContent"
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
        *({"inlineData": {"mimeType": "image/png", "data": b64()}} for _ in range(15)),
        {"text": "all of them"}]}]}
    reply = httpx.post(url, headers={"x-goog-api-key": KEY}, json=many, timeout=60)
    assert reply.status_code == 400 and "at most 14 images" in reply.text, reply.text
