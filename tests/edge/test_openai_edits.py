"""OpenAI's image edits in-process: `POST /v1/images/edits` as multipart (as every openai SDK
sends it) and as JSON; what the engine is handed (operation, strength, the mask read by
OpenAI's rule: transparent is repainted), the size taken from the input, and every refusal in
OpenAI's error shape naming the part. The SDKs and the pixels: tests/dialects/
test_openai_edits.py."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from easel.domain.generation import Operation
from easel.runtime.build import build_blobs
from easel.services.images.inputs import input_keys
from tests.core.test_input_images import bomb_png
from tests.core.test_loras import PRESENT, catalog_of
from tests.edge.conftest import KEY, Edge
from tests.edge.test_images_in import data_uri, picture, png
from tests.fakes import FakeEngine

AUTH = {"Authorization": f"Bearer {KEY}"}
STANDARD, FAST = "imagen-4.0-generate-001", "imagen-4.0-fast-generate-001"


def hole_mask(width: int = 96, height: int = 64, white_opaque: bool = True) -> Image.Image:
    """OpenAI's kind of mask: opaque everywhere (white, which OpenAI does not read as "edit")
    but a transparent hole in the right half."""
    rgba = np.full((height, width, 4), 255 if white_opaque else 0, np.uint8)
    rgba[..., 3] = 255
    rgba[:, width // 2:, 3] = 0
    return Image.fromarray(rgba, "RGBA")


@pytest.fixture
def edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    return make_edge(FakeEngine(), catalog_file=catalog)


def edit(edge: Edge, images: list[bytes] | None = None, mask: bytes | None = None,
         part: str = "image", **fields: Any) -> Any:
    """A multipart edit as the SDK sends it: text fields, then the image parts, then mask."""
    files: list[tuple[str, tuple[str, bytes, str]]] = [
        (part, (f"in{i}.png", data, "image/png"))
        for i, data in enumerate(images if images is not None else [png(picture())])]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    data = {"prompt": "a red fox", "model": STANDARD, "response_format": "b64_json",
            **{k: str(v) for k, v in fields.items()}}
    return edge.client.post("/v1/images/edits", data=data, files=files, headers=AUTH)


def test_a_mask_repaints_its_transparent_pixels_only_at_full_strength(edge: Edge) -> None:
    reply = edit(edge, mask=png(hole_mask()))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    (call,) = edge.engine.calls
    assert (call.operation, call.strength) == (Operation.INPAINT, 1.0)
    # No size asked for: the input's shape (96x64) at the model's nearest size.
    size = catalog_of(edge.settings).model(STANDARD).nearest_size(96, 64, one_pass=True)
    assert (call.width, call.height) == (size.width, size.height)
    assert body["size"] == f"{size.width}x{size.height}"
    (job_id,) = edge.db("SELECT id FROM jobs")[0]
    mask = call.inputs[input_keys(job_id)[1]]
    # The opaque white half is kept (OpenAI reads only the alpha); the hole is repainted.
    assert set(np.unique(mask[:, : size.width // 3])) == {0}
    assert set(np.unique(mask[:, -size.width // 3:])) == {255}
    out = Image.open(io.BytesIO(__import__("base64").b64decode(body["data"][0]["b64_json"])))
    assert out.size == (size.width, size.height)


@pytest.mark.parametrize(("fields", "strength"), [
    ({}, 0.8), ({"input_fidelity": "high"}, 0.5), ({"strength": "0.3"}, 0.3)])
def test_without_a_mask_the_image_is_redrawn_at_a_strength(
    edge: Edge, fields: dict[str, Any], strength: float,
) -> None:
    reply = edit(edge, part="image[]", size="1024x1024", **fields)
    assert reply.status_code == 200, reply.text
    (call,) = edge.engine.calls
    assert (call.operation, call.strength) == (Operation.IMAGE, strength)
    assert call.width == call.height  # the size asked for, not the input's shape


@pytest.mark.parametrize("fields", [{}, {"input_fidelity": "high"}])
def test_on_fast_the_model_is_shown_every_image_to_edit_by_instruction(
    edge: Edge, fields: dict[str, Any],
) -> None:
    """FLUX.2 [klein] edits from reference images: no strength, every image shown in order."""
    first, second = png(picture()), png(picture().rotate(180))
    reply = edit(edge, images=[first, second], part="image[]", model=FAST, **fields)
    assert reply.status_code == 200, reply.text
    (call,) = edge.engine.calls
    assert call.operation is Operation.REFERENCE
    (job_id,) = edge.db("SELECT id FROM jobs")[0]
    shown = call.images[0].references
    assert shown == (input_keys(job_id)[0], f"input-{job_id}-1.png")
    # Shown in their own shape (96x64), not fitted to the size drawn.
    assert all(np.asarray(call.inputs[key]).shape == (64, 96, 3) for key in shown)
    assert not np.array_equal(call.inputs[shown[0]], call.inputs[shown[1]])
    blobs = build_blobs(edge.settings)
    assert blobs.get(f"input-{job_id}-1.png") is None  # gone once the job ended


def test_a_json_body_takes_image_urls_and_urls_come_back(edge: Edge) -> None:
    body = {"prompt": "a red fox", "model": STANDARD,
            "images": [{"image_url": data_uri(png(picture()))}],
            "mask": {"image_url": data_uri(png(hole_mask()))}}
    reply = edge.client.post("/v1/images/edits", json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    url = reply.json()["data"][0]["url"]
    assert edge.client.get(url).status_code == 200
    assert edge.engine.calls[0].operation is Operation.INPAINT


def garbage() -> bytes:
    return b"GIF89a" + b"\0" * 40


@pytest.mark.parametrize(("kwargs", "parameter", "words"), [
    ({"images": [garbage()]}, "image", "is not a PNG, JPEG or WEBP image"),
    ({"images": [png(picture())[:200]]}, "image", "truncated or corrupt"),
    ({"images": [bomb_png(30_000, 30_000)]}, "image", "too many pixels"),
    ({"mask": png(hole_mask(48, 32))}, "mask", "they must be the same size"),
    ({"mask": png(Image.new("RGBA", (96, 64), (255, 255, 255, 255)))}, "mask",
     "marks nothing to repaint: paint the area to change transparent"),
    ({"images": [png(picture())] * 17}, "image[16]", "at most 16 images"),
    ({"images": [png(picture())] * 2, "part": "image[]"}, "image[1]",
     "cannot combine several images; choose a tier whose model edits from reference images"),
    ({"images": [png(picture())] * 2, "mask": png(hole_mask())}, "image[1]",
     "a mask edits one image"),
    ({"model": FAST, "strength": "0.5"}, "strength", "takes no strength"),
    ({"images": []}, "image", "image is required"),
    ({"input_fidelity": "max"}, "input_fidelity", ""),
    ({"strength": "0"}, "strength", ""),
    ({"colour": "red"}, "colour", "not a parameter easel accepts"),
])
def test_each_bad_edit_is_refused_in_openais_shape_naming_the_part(
    edge: Edge, kwargs: dict[str, Any], parameter: str, words: str,
) -> None:
    reply = edit(edge, **kwargs)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == parameter and words in error["message"], error
    assert error["type"] == "invalid_request_error"
    assert not edge.engine.calls


def test_a_private_url_a_file_id_and_a_form_of_another_type_are_refused(edge: Edge) -> None:
    as_text = edge.client.post("/v1/images/edits", headers=AUTH, data={
        "prompt": "x", "image": "http://10.0.0.7/a.png"})
    assert as_text.status_code == 400 and as_text.json()["error"]["param"] == "image"
    assert "refused" in as_text.json()["error"]["message"]
    file_id = edge.client.post("/v1/images/edits", headers=AUTH, json={
        "prompt": "x", "images": [{"file_id": "file-abc"}]})
    assert file_id.status_code == 400
    assert file_id.json()["error"]["param"] == "images[0].file_id"
    plain = edge.client.post("/v1/images/edits", headers={**AUTH, "content-type": "text/plain"},
                             content=b"prompt=x")
    assert plain.status_code == 415, plain.text
    assert plain.json()["error"]["param"] == "Content-Type"
    broken = edge.client.post("/v1/images/edits", content=b"--x\r\nnonsense", headers={
        **AUTH, "content-type": "multipart/form-data; boundary=x"})
    # Nothing readable in it: the first field missing is named.
    assert broken.status_code == 400 and broken.json()["error"]["param"] == "prompt"
    assert not edge.engine.calls


def test_a_body_over_the_limit_is_413(make_edge: Callable[..., Edge], tmp_path: Path) -> None:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    small = make_edge(FakeEngine(), catalog_file=catalog, max_body_bytes=10_000)
    reply = edit(small, images=[bytes(20_000)])
    assert reply.status_code == 413 and reply.json()["error"]["param"] == "body"


def test_aimls_gemini_edit_ids_edit_their_image_urls_on_generations(edge: Edge) -> None:
    body = {"model": "google/nano-banana-edit", "prompt": "make it night",
            "image_urls": [data_uri(png(picture())), data_uri(png(picture().rotate(180)))],
            "num_images": 1}
    reply = edge.client.post("/v1/images/generations", json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    (call,) = edge.engine.calls
    assert call.operation is Operation.REFERENCE and len(call.images[0].references) == 2
    assert reply.json()["images"][0]["url"]  # AIML's reply field
    pro = edge.client.post("/v1/images/generations", headers=AUTH, json={
        **body, "model": "google/gemini-3-pro-image-edit"})
    assert pro.status_code == 400 and pro.json()["error"]["param"] == "image_urls[1]"
