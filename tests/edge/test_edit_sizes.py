"""An edit that sends a resolution and no aspect ratio: the input image's shape at that
resolution, in every dialect that takes one (before, the resolution was dropped and 1K drawn);
one the model has not is refused naming the dialect's parameter."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from easel.api.dialects.wavespeed.translate import shown_images
from tests.edge.conftest import KEY, Edge
from tests.edge.test_images_in import data_uri, picture, png
from tests.fakes import FakeEngine

AUTH = {"Authorization": f"Bearer {KEY}"}
VERTEX = "/v1beta1/projects/p/locations/us-central1/publishers/google/models/{}:predict"
GEMINI = "/v1beta/models/gemini-3-pro-image-preview:{}"


@pytest.fixture
def edge(make_edge: Callable[..., Edge]) -> Edge:
    return make_edge(FakeEngine(), small=False)  # the catalog's own sizes, 1K and 2K


def raw_image() -> dict[str, Any]:
    data = base64.b64encode(png(picture(96, 64))).decode()  # 3:2
    return {"referenceType": "REFERENCE_TYPE_RAW", "referenceId": 1,
            "referenceImage": {"bytesBase64Encoded": data, "mimeType": "image/png"}}


def predict(edge: Edge, model: str, **parameters: Any) -> Any:
    body = {"instances": [{"prompt": "a red fox", "referenceImages": [raw_image()]}],
            "parameters": {"sampleCount": 1, **parameters}}
    return edge.client.post(VERTEX.format(model), json=body, headers=AUTH)


def drawn(edge: Edge) -> tuple[int, int]:
    (call,) = edge.engine.calls
    return call.width, call.height


def test_vertex_draws_the_inputs_shape_at_the_size_asked(edge: Edge) -> None:
    reply = predict(edge, "imagen-3.0-capability-001", sampleImageSize="2K")
    assert reply.status_code == 200, reply.text
    width, height = drawn(edge)
    assert width > height and width * height > 3_000_000


def test_vertex_refuses_a_size_the_model_has_not_naming_it(edge: Edge) -> None:
    reply = predict(edge, "imagen-4.0-fast-generate-001", sampleImageSize="2K")
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "sampleImageSize" in error["message"]
    assert edge.engine.calls == []


def contents() -> dict[str, Any]:
    data = base64.b64encode(png(picture(96, 64))).decode()
    return {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": data}}, {"text": "make it blue"}]}]}


def test_gemini_draws_the_inputs_shape_at_the_image_size_asked(edge: Edge) -> None:
    body = {**contents(), "generationConfig": {"imageConfig": {"imageSize": "2K"}}}
    reply = edge.client.post(GEMINI.format("generateContent"), json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    width, height = drawn(edge)
    assert width > height and width * height > 3_000_000


@pytest.mark.parametrize("config", [{}, {"imageConfig": {"imageSize": "2K"}}])
def test_a_streamed_edit_with_no_aspect_ratio_keeps_the_inputs_shape(
    edge: Edge, config: dict[str, Any]
) -> None:
    """The stream reserves its reply before the input is read (it was a 500 here)."""
    body = {**contents(), "generationConfig": config}
    reply = edge.client.post(GEMINI.format("streamGenerateContent"), params={"alt": "sse"},
                             json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    events = [line for line in reply.text.splitlines() if line.startswith("data: ")]
    assert any('"inlineData"' in event for event in events), reply.text[-500:]
    width, height = drawn(edge)
    assert width > height and (width * height > 3_000_000) == bool(config)


def wavespeed_edit(edge: Edge, **fields: Any) -> dict[str, Any]:
    body = {"prompt": "make it blue", "images": [data_uri(png(picture(96, 64)))],
            "enable_sync_mode": True, **fields}
    reply = edge.client.post("/api/v3/google/nano-banana-pro/edit", json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["data"])


def test_wavespeed_refuses_a_resolution_the_edit_model_has_not(edge: Edge) -> None:
    for resolution in ("banana", "4k"):
        data = wavespeed_edit(edge, resolution=resolution)
        assert data["status"] == "failed" and data["code"] == 1401, data
        assert "resolution" in data["error"]
    assert edge.engine.calls == []
    assert wavespeed_edit(edge, resolution="1k")["status"] == "completed"


def test_wavespeed_echoes_an_inline_image_by_its_length_not_its_bytes(edge: Edge) -> None:
    sent = data_uri(png(picture(96, 64)))
    url = "https://example.com/a.png"  # echoed as sent; never fetched (the job is refused)
    data = wavespeed_edit(edge)
    assert data["status"] == "completed"
    assert data["input"]["images"] == [f"(an image sent inline, {len(sent)} characters)"]
    polled = edge.client.get(data["urls"]["get"].split("testserver", 1)[-1], headers=AUTH)
    assert polled.status_code == 200 and sent not in polled.text
    assert shown_images([url, sent])[0] == url


def test_easels_api_draws_the_inputs_shape_at_the_resolution_asked(edge: Edge) -> None:
    body = {"model": "google/imagen4", "prompt": "a red fox", "resolution": "2k",
            "image": data_uri(png(picture(96, 64)))}
    reply = edge.client.post("/easel/jobs", json=body, headers=AUTH)
    assert reply.status_code == 202, reply.text
    edge.wait(reply.json()["id"])
    width, height = drawn(edge)
    assert width > height and width * height > 3_000_000

