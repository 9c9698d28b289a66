"""An edited image's content credentials record what it was drawn from: c2pa.opened (the image
edited) and c2pa.edited, each input a C2PA ingredient (the file the model was given) with the
sha256 of the file the client sent, and the manifest still Valid. In-process, with a test
certificate, through OpenAI's edits (image and mask) and Runware's reference images."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from easel.services.images.provenance import (
    EDITED_SOURCE_TYPE,
    ENHANCED_SOURCE_TYPE,
    GENERATION_LABEL,
    make_test_certificate,
    read_credentials,
)
from tests.core.test_loras import PRESENT
from tests.edge.conftest import KEY, Edge
from tests.edge.test_images_in import data_uri, picture, png
from tests.edge.test_openai_edits import hole_mask
from tests.fakes import FakeEngine
from tests.server_harness import inference


@pytest.fixture
def edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    cert, key = make_test_certificate(tmp_path / "c2pa")
    return make_edge(FakeEngine(), catalog_file=catalog, c2pa_certificate=cert,
                     c2pa_private_key=key)


def manifest(data: bytes) -> dict[str, Any]:
    store = read_credentials(data, "image/png")
    assert store is not None and store["validation_state"] == "Valid", store
    return dict(store["manifests"][store["active_manifest"]])


def actions_of(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for item in found["assertions"] if item["label"].startswith("c2pa.actions")
            for a in item["data"]["actions"]]


def test_an_inpainted_image_records_its_image_and_mask(edge: Edge) -> None:
    image, mask = png(picture()), png(hole_mask())
    reply = edge.client.post("/v1/images/edits", headers={"Authorization": f"Bearer {KEY}"},
                             data={"prompt": "a red fox", "model": "imagen-4.0-generate-001",
                                   "response_format": "b64_json"},
                             files=[("image", ("in.png", image, "image/png")),
                                    ("mask", ("mask.png", mask, "image/png"))])
    assert reply.status_code == 200, reply.text
    found = manifest(base64.b64decode(reply.json()["data"][0]["b64_json"]))
    assert [(i["title"], i["relationship"]) for i in found["ingredients"]] == [
        ("image.png", "parentOf"), ("mask.png", "inputTo")]
    assert [a["action"] for a in actions_of(found)] == ["c2pa.opened", "c2pa.edited"]
    assert actions_of(found)[1]["digitalSourceType"] == EDITED_SOURCE_TYPE
    generation = next(a["data"] for a in found["assertions"] if a["label"] == GENERATION_LABEL)
    assert generation["operation"] == "inpaint"
    assert [i["sha256"] for i in generation["inputs"]] == [
        hashlib.sha256(image).hexdigest(), hashlib.sha256(mask).hexdigest()]


def test_an_image_drawn_from_references_records_each(edge: Edge) -> None:
    first, second = png(picture()), png(picture().rotate(180))
    task = inference(model="google:2@3", outputType="base64Data", outputFormat="PNG",
                     referenceImages=[data_uri(first), data_uri(second)])
    item = edge.runware([task]).json()["data"][0]
    found = manifest(base64.b64decode(item["imageBase64Data"]))
    assert [(i["title"], i["relationship"]) for i in found["ingredients"]] == [
        ("image.png", "parentOf"), ("reference 1.png", "componentOf")]
    assert [a["action"] for a in actions_of(found)] == ["c2pa.opened", "c2pa.placed",
                                                       "c2pa.edited"]


def test_an_image_drawn_from_text_is_still_created(edge: Edge) -> None:
    item = edge.runware([inference(model="google:2@3", outputType="base64Data",
                                   outputFormat="PNG")]).json()["data"][0]
    found = manifest(base64.b64decode(item["imageBase64Data"]))
    assert [a["action"] for a in actions_of(found)] == ["c2pa.created"]
    assert "ingredients" not in found or not found["ingredients"]


def test_an_upscaled_image_records_its_image_and_that_it_was_resized(edge: Edge) -> None:
    image = png(picture())
    task = {"taskType": "upscale", "taskUUID": "6f1c3b62-7a4e-4b8e-9a52-2c2f1e1d0a11",
            "inputImage": data_uri(image), "upscaleFactor": 2, "outputType": "base64Data",
            "outputFormat": "PNG"}
    item = edge.runware([task]).json()["data"][0]
    found = manifest(base64.b64decode(item["imageBase64Data"]))
    assert found["title"].startswith("Upscaled by easel")
    assert [(i["title"], i["relationship"]) for i in found["ingredients"]] == [
        ("image.png", "parentOf")]
    actions = actions_of(found)
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.resized"]
    assert actions[1]["digitalSourceType"] == ENHANCED_SOURCE_TYPE
    generation = next(a["data"] for a in found["assertions"] if a["label"] == GENERATION_LABEL)
    assert generation["operation"] == "upscale"
    assert generation["inputs"][0]["sha256"] == hashlib.sha256(image).hexdigest()
