"""Vertex's editing body in-process: what the engine is handed for each edit mode (the mask's
white repainted, grown by `dilation`), and each refusal as a Google RPC error naming the field.
google-genai's edit_image on the tiny pipelines: tests/dialects/test_sdks_on_tiny.py."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from easel.domain.generation import Operation
from easel.services.images.inputs import input_keys
from tests.core.test_loras import PRESENT
from tests.edge.conftest import KEY, Edge
from tests.edge.test_images_in import half_mask, picture, png
from tests.fakes import FakeEngine

PATH = ("/v1beta1/projects/p/locations/us-central1/publishers/google/models/"
        "imagen-3.0-capability-001:predict")
REFS = "instances[0].referenceImages"


@pytest.fixture
def edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    return make_edge(FakeEngine(), catalog_file=catalog)


def raw(image: bytes | None = None) -> dict[str, Any]:
    data = base64.b64encode(image or png(picture())).decode()
    return {"referenceType": "REFERENCE_TYPE_RAW", "referenceId": 1,
            "referenceImage": {"bytesBase64Encoded": data, "mimeType": "image/png"}}


def mask(mode: str = "MASK_MODE_USER_PROVIDED", dilation: float | None = None,
         image: bytes | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"maskMode": mode}
    if dilation is not None:
        config["dilation"] = dilation
    ref: dict[str, Any] = {"referenceType": "REFERENCE_TYPE_MASK", "referenceId": 2,
                           "maskImageConfig": config}
    if mode == "MASK_MODE_USER_PROVIDED":
        data = base64.b64encode(image or png(half_mask())).decode()
        ref["referenceImage"] = {"bytesBase64Encoded": data, "mimeType": "image/png"}
    return ref


def predict(edge: Edge, refs: list[dict[str, Any]], prompt: str = "a red fox",
            **parameters: Any) -> Any:
    body = {"instances": [{"prompt": prompt, "referenceImages": refs}],
            "parameters": {"sampleCount": 1, "addWatermark": False, "seed": 3, **parameters}}
    return edge.client.post(PATH, json=body, headers={"Authorization": f"Bearer {KEY}"})


def test_insertion_repaints_the_masks_white_grown_by_its_dilation(edge: Edge) -> None:
    reply = predict(edge, [raw(), mask(dilation=0.1)], editMode="EDIT_MODE_INPAINT_INSERTION",
                    editConfig={"baseSteps": 35})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-easel-ignored-fields"] == "editConfig.baseSteps"
    (call,) = edge.engine.calls
    assert (call.operation, call.strength) == (Operation.INPAINT, 1.0)
    (job_id,) = edge.db("SELECT id FROM jobs")[0]
    levels = np.asarray(call.inputs[input_keys(job_id)[1]])
    width = levels.shape[1]
    grown = round(0.1 * max(levels.shape))
    assert (levels[:, width // 2 - grown + 1] == 255).all()  # grown leftwards by `grown`
    assert (levels[:, : width // 2 - grown - 1] == 0).all()


def test_removal_with_no_prompt_asks_for_the_background(edge: Edge) -> None:
    reply = predict(edge, [raw(), mask()], prompt="", editMode="EDIT_MODE_INPAINT_REMOVAL")
    assert reply.status_code == 200, reply.text
    assert edge.engine.calls[0].images[0].prompt.startswith("the background")


def test_a_raw_image_alone_is_redrawn_from(edge: Edge) -> None:
    reply = predict(edge, [raw()])
    assert reply.status_code == 200, reply.text
    assert edge.engine.calls[0].operation is Operation.IMAGE


@pytest.mark.parametrize(("refs", "parameters", "field", "words"), [
    ([], {"editMode": "EDIT_MODE_INPAINT_INSERTION"}, REFS, "needs instances[0]"),
    ([mask()], {}, REFS, "needs a REFERENCE_TYPE_RAW image"),
    ([raw(), raw()], {}, f"{REFS}[1]", "takes one RAW image"),
    ([raw()], {"editMode": "EDIT_MODE_OUTPAINT"}, REFS, "needs a REFERENCE_TYPE_MASK"),
    ([raw(), mask("MASK_MODE_FOREGROUND")], {"editMode": "EDIT_MODE_INPAINT_REMOVAL"},
     f"{REFS}[1].maskImageConfig.maskMode", "segmentation model"),
    ([raw(), {"referenceType": "REFERENCE_TYPE_CONTROL", "referenceId": 2,
              "controlImageConfig": {"controlType": "CONTROL_TYPE_CANNY"}}], {},
     f"{REFS}[1].referenceType", "is not served"),
    ([raw()], {"editMode": "EDIT_MODE_PRODUCT_IMAGE"}, "parameters.editMode", "not served"),
    ([{"referenceType": "REFERENCE_TYPE_RAW", "referenceImage": {"gcsUri": "gs://b/x.png"}}],
     {}, f"{REFS}[0].referenceImage.gcsUri", "reads no Cloud Storage"),
    ([raw(b"GIF89a" + b"\0" * 40)], {}, f"{REFS}[0].referenceImage.bytesBase64Encoded",
     "is not a PNG, JPEG or WEBP image"),
    ([raw(), mask(image=png(half_mask(48, 32)))], {"editMode": "EDIT_MODE_INPAINT_INSERTION"},
     f"{REFS}[1].referenceImage.bytesBase64Encoded", "same size"),
])
def test_each_bad_edit_is_a_google_error_naming_the_field(
    edge: Edge, refs: list[dict[str, Any]], parameters: dict[str, Any], field: str, words: str,
) -> None:
    reply = predict(edge, refs, **parameters)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and words in error["message"], error
    assert error["details"][0]["fieldViolations"][0]["field"] == field
    assert not edge.engine.calls


# -- the upscale model --------------------------------------------------------------------------

UPSCALE_PATH = PATH.replace("imagen-3.0-capability-001", "imagen-4.0-upscale-preview")
FACTOR = "parameters.upscaleConfig.upscaleFactor"


def upscale(edge: Edge, instance: dict[str, Any] | None = None, path: str = UPSCALE_PATH,
            **parameters: Any) -> Any:
    image = {"bytesBase64Encoded": base64.b64encode(png(picture())).decode(),
             "mimeType": "image/png"}
    body = {"instances": [instance if instance is not None else {"image": image}],
            "parameters": {"mode": "upscale", "upscaleConfig": {"upscaleFactor": "x2"},
                           "sampleCount": 1, "outputOptions": {"mimeType": "image/png"},
                           **parameters}}
    return edge.client.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"})


def test_the_upscale_model_enlarges_the_image_by_its_factor(edge: Edge) -> None:
    reply = upscale(edge, upscaleConfig={"upscaleFactor": "x3", "enhanceInputImage": True})
    assert reply.status_code == 200, reply.text
    (prediction,) = reply.json()["predictions"]
    assert prediction["mimeType"] == "image/png"
    (call,) = edge.engine.calls
    assert (call.operation, call.width, call.height) == (Operation.UPSCALE, 288, 192)
    assert "upscaleConfig.enhanceInputImage" in reply.headers["x-easel-ignored-fields"]
    # Without `mode`, as the newer page of Google's reference shows the body: the same.
    assert upscale(edge, mode=None).status_code == 200


@pytest.mark.parametrize(("instance", "parameters", "field", "words"), [
    (None, {"upscaleConfig": {}}, FACTOR, "is required"),
    (None, {"upscaleConfig": {"upscaleFactor": "x5"}}, FACTOR, "x2"),
    (None, {"mode": "enhance"}, "parameters.mode", "not served"),
    ({"prompt": ""}, {}, "instances[0].image", "is required"),
    ({"image": {"gcsUri": "gs://b/x.png"}}, {}, "instances[0].image.gcsUri",
     "reads no Cloud Storage"),
    ({"image": {"bytesBase64Encoded": base64.b64encode(b"GIF89a" + b"\0" * 40).decode()}}, {},
     "instances[0].image.bytesBase64Encoded", "is not a PNG, JPEG or WEBP image"),
    ({"image": {"bytesBase64Encoded": "x"}, "referenceImages": [raw()]}, {}, REFS,
     "without"),
])
def test_each_bad_upscale_is_a_google_error_naming_the_field(
    edge: Edge, instance: dict[str, Any] | None, parameters: dict[str, Any], field: str,
    words: str,
) -> None:
    reply = upscale(edge, instance, **parameters)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and words in error["message"], error
    assert error["details"][0]["fieldViolations"][0]["field"] == field
    assert not edge.engine.calls


def test_text_to_image_on_the_upscale_model_asks_for_the_image(edge: Edge) -> None:
    body = {"instances": [{"prompt": "a fox"}], "parameters": {"sampleCount": 1}}
    reply = edge.client.post(UPSCALE_PATH, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["details"][0]["fieldViolations"][0]["field"] == "instances[0].image"
    assert "upscales an image" in error["message"]


def test_an_image_to_upscale_sent_without_a_factor_says_where_it_goes(edge: Edge) -> None:
    image = {"bytesBase64Encoded": base64.b64encode(png(picture())).decode()}
    body = {"instances": [{"prompt": "a fox", "image": image}], "parameters": {"sampleCount": 1}}
    path = PATH.replace("imagen-3.0-capability-001", "imagen-4.0-generate-001")
    reply = edge.client.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["details"][0]["fieldViolations"][0]["field"] == "instances[0].image"
    assert "is the upscale model's input" in error["message"]


def test_what_an_upscale_cannot_use_is_named_as_ignored_and_a_seed_needs_no_watermark_off(
    edge: Edge,
) -> None:
    image = {"bytesBase64Encoded": base64.b64encode(png(picture())).decode()}
    reply = upscale(edge, {"prompt": "sharper", "image": image}, aspectRatio="16:9", seed=5,
                    enhancePrompt=True)
    assert reply.status_code == 200, reply.text
    ignored = reply.headers["x-easel-ignored-fields"]
    for name in ("prompt", "aspectRatio", "seed", "enhancePrompt"):
        assert name in ignored, ignored
    for size in ("1K", "2K"):  # the factor sets an upscale's size, never sampleImageSize
        reply = upscale(edge, {"image": image}, sampleImageSize=size)
        assert reply.status_code == 200, reply.text
        assert "sampleImageSize" in reply.headers["x-easel-ignored-fields"]
    refused = upscale(edge, editMode="EDIT_MODE_INPAINT_INSERTION")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["details"][0]["fieldViolations"][0]["field"] == \
        "parameters.editMode"


def test_billing_labels_are_taken_and_named_as_ignored_on_generate_edit_and_upscale(
    edge: Edge,
) -> None:
    """google-genai sends `labels=` top level on generate_images, edit_image and upscale_image
    (Vertex bills by them)."""
    image = {"bytesBase64Encoded": base64.b64encode(png(picture())).decode()}
    generate = PATH.replace("imagen-3.0-capability-001", "imagen-4.0-generate-001")
    for path, instance, parameters in (
        (generate, {"prompt": "a fox"}, {}),
        (PATH, {"prompt": "a fox", "referenceImages": [raw(), mask()]},
         {"editMode": "EDIT_MODE_INPAINT_INSERTION"}),
        (UPSCALE_PATH, {"image": image},
         {"mode": "upscale", "upscaleConfig": {"upscaleFactor": "x2"}}),
    ):
        body = {"instances": [instance], "parameters": {"sampleCount": 1, **parameters},
                "labels": {"team": "design", "cost-centre": "42"}}
        reply = edge.client.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert reply.status_code == 200, (path, reply.text)
        assert "labels" in reply.headers["x-easel-ignored-fields"].split(", ")
    body = {"instances": [{"prompt": "a fox"}], "labels": {"team": 7}}
    refused = edge.client.post(generate, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["details"][0]["fieldViolations"][0]["field"] == "labels.team"
