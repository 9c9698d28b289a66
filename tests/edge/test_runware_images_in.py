"""Runware's images in, in-process: `imageUpload` (an imageUUID only its caller may name, a URL
that serves it, 30 days from its last use), `imageInference` with seedImage / maskImage /
strength (top level or in `inputs`), an image of one of the caller's own tasks named by its
imageUUID, and every refusal as Runware words it (invalid<Param>, unsupported<Param>)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from easel.domain.generation import Operation
from easel.runtime.build import build_blobs
from easel.services.images.inputs import input_keys
from easel.services.images.uploads import UPLOAD_TTL_SECONDS
from tests.core.test_input_images import bomb_png
from tests.core.test_loras import PRESENT
from tests.edge.conftest import KEY, Edge
from tests.edge.test_images_in import data_uri, half_mask, picture, png
from tests.fakes import FakeEngine
from tests.server_harness import inference, new_uuid

OTHER_KEY = "other-key"
STANDARD = "google:2@1"


@pytest.fixture
def edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    return make_edge(FakeEngine(), catalog_file=catalog, api_keys=[KEY, OTHER_KEY])


def upload(edge: Edge, image: str, key: str = KEY) -> Any:
    reply = edge.runware([{"taskType": "imageUpload", "taskUUID": new_uuid(), "image": image}],
                         key=key)
    return reply.json()


def uploaded(edge: Edge, image: bytes, key: str = KEY) -> dict[str, Any]:
    body = upload(edge, data_uri(image), key)
    assert "errors" not in body, body
    (item,) = body["data"]
    return dict(item)


def test_an_upload_is_named_by_its_uuid_and_served_at_its_url(edge: Edge) -> None:
    item = uploaded(edge, png(picture()))
    assert item["taskType"] == "imageUpload" and len(item["imageUUID"]) == 36
    served = edge.client.get(item["imageURL"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.content == png(picture())  # kept as sent
    task = inference(model=STANDARD, seedImage=item["imageUUID"],
                     maskImage=data_uri(png(half_mask())), strength=0.7, outputType="URL")
    reply = edge.runware([task]).json()
    assert "errors" not in reply, reply
    (call,) = edge.engine.calls
    assert (call.operation, call.strength) == (Operation.INPAINT, 0.7)
    (job_id,) = edge.db("SELECT id FROM jobs")[0]
    mask = call.inputs[input_keys(job_id)[1]]
    assert (mask[:, :28] == 0).all() and (mask[:, 36:] == 255).all()  # white repaints


def test_the_inputs_object_and_an_image_of_an_earlier_task_work_too(edge: Edge) -> None:
    first = edge.runware([inference(model=STANDARD)]).json()["data"][0]
    task = inference(model=STANDARD, inputs={"image": first["imageUUID"]})
    reply = edge.runware([task]).json()
    assert "errors" not in reply, reply
    assert edge.engine.calls[-1].operation is Operation.IMAGE
    assert edge.engine.calls[-1].strength == 0.8  # Runware's default
    # Its imageURL, easel's own: read from the store (never fetched), for its caller only.
    by_url = edge.runware([inference(model=STANDARD, seedImage=first["imageURL"])]).json()
    assert "errors" not in by_url, by_url
    theirs = edge.runware([inference(model=STANDARD, seedImage=first["imageURL"])],
                          key=OTHER_KEY).json()["errors"][0]
    assert theirs["code"] == "invalidSeedImage" and "names no image of yours" in \
        theirs["message"]


def test_another_callers_uuid_names_nothing(edge: Edge) -> None:
    mine = uploaded(edge, png(picture()))
    error = edge.runware([inference(model=STANDARD, seedImage=mine["imageUUID"])],
                         key=OTHER_KEY).json()["errors"][0]
    assert (error["code"], error["parameter"]) == ("invalidSeedImage", "seedImage")
    assert "names no image of yours" in error["message"]
    theirs = edge.runware([inference(model=STANDARD)], key=OTHER_KEY).json()["data"][0]
    error = edge.runware([inference(model=STANDARD, seedImage=theirs["imageUUID"])]).json()
    assert error["errors"][0]["code"] == "invalidSeedImage"
    assert not [c for c in edge.engine.calls if c.operation is not Operation.TEXT]


def test_reference_images_are_shown_to_flux2_klein(edge: Edge) -> None:
    mine = uploaded(edge, png(picture()))
    task = inference(model="google:2@3", referenceImages=[
        mine["imageUUID"], {"image": data_uri(png(picture().rotate(90)))}])
    reply = edge.runware([task]).json()
    assert "errors" not in reply, reply
    (call,) = edge.engine.calls
    assert call.operation is Operation.REFERENCE and len(call.images[0].references) == 2


def test_an_upload_lives_thirty_days_from_its_last_use(edge: Edge) -> None:
    item = uploaded(edge, png(picture()))
    edge.wall.advance(UPLOAD_TTL_SECONDS - 60)
    used = edge.runware([inference(model=STANDARD, seedImage=item["imageUUID"])]).json()
    assert "errors" not in used, used  # used: thirty days more from now
    edge.wall.advance(UPLOAD_TTL_SECONDS - 60)
    assert edge.client.get(item["imageURL"]).status_code == 200
    edge.wall.advance(120)
    assert edge.client.get(item["imageURL"]).status_code == 404
    artifacts = edge.server.runtime.artifacts
    assert artifacts.sweep() >= 1
    blobs = build_blobs(edge.settings)
    assert blobs.get(f"{item['imageUUID']}.png") is None
    gone = edge.runware([inference(model=STANDARD, seedImage=item["imageUUID"])]).json()
    assert gone["errors"][0]["code"] == "invalidSeedImage"


@pytest.mark.parametrize(("fields", "code", "parameter"), [
    ({"seedImage": data_uri(b"GIF89a" + b"\0" * 40)}, "invalidSeedImage", "seedImage"),
    ({"seedImage": data_uri(bomb_png(30_000, 30_000))}, "invalidSeedImage", "seedImage"),
    ({"seedImage": data_uri(png(picture())), "maskImage": data_uri(png(half_mask(48, 32)))},
     "invalidMaskImage", "maskImage"),
    ({"inputs": {"image": data_uri(png(picture())), "mask": data_uri(png(half_mask(48, 32)))}},
     "invalidMask", "inputs.mask"),
    ({"seedImage": "http://169.254.169.254/latest/meta-data"}, "invalidSeedImage", "seedImage"),
    ({"maskImage": data_uri(png(half_mask()))}, "missingSeedImage", "seedImage"),
    ({"strength": 0.5}, "missingSeedImage", "seedImage"),
    ({"seedImage": data_uri(png(picture())), "strength": 1.5}, "invalidStrength", "strength"),
    ({"seedImage": data_uri(png(picture())), "inputs": {"image": data_uri(png(picture()))}},
     "conflictingImage", "inputs.image"),
    ({"seedImage": data_uri(png(picture())), "maskImage": data_uri(png(half_mask())),
      "maskMargin": 64}, "unsupportedMaskMargin", "maskMargin"),
    ({"outpaint": {"top": 64}}, "missingSeedImage", "seedImage"),
    ({"seedImage": data_uri(png(picture())), "outpaint": {"top": 50}}, "invalidOutpaint",
     "outpaint"),  # Runware's margins are multiples of 64
    ({"seedImage": data_uri(png(picture())), "outpaint": {"top": 64, "blur": 40}},
     "invalidOutpaint", "outpaint"),
    ({"seedImage": data_uri(png(picture())), "outpaint": {}}, "invalidOutpaint", "outpaint"),
    ({"seedImage": data_uri(png(picture())), "outpaint": {"top": 64, "middle": 1}},
     "invalidOutpaint", "outpaint"),
    ({"seedImage": data_uri(png(picture())), "maskImage": data_uri(png(half_mask())),
      "outpaint": {"top": 64}}, "unsupportedParameter", "maskImage"),
    ({"referenceImages": [data_uri(png(picture()))] * 2}, "unsupportedReferenceImages",
     "referenceImages[1]"),  # Z-Image combines no images
    ({"referenceImages": [5]}, "invalidReferenceImages", "referenceImages[0]"),
    ({"model": "google:2@3", "referenceImages": [data_uri(png(picture()))], "strength": 0.5},
     "unsupportedStrength", "strength"),
    ({"seedImage": "./photo.jpg"}, "invalidSeedImage", "seedImage"),  # runware-sdk sends paths
    ({"model": "google:2@3", "seedImage": data_uri(png(picture()))}, "unsupportedSeedImage",
     "seedImage"),  # FLUX.2 [klein] does no image-to-image
])
def test_each_bad_input_is_refused_as_runware_words_it(
    edge: Edge, fields: dict[str, Any], code: str, parameter: str,
) -> None:
    reply = edge.runware([inference(**{"model": STANDARD, **fields})]).json()
    error = reply["errors"][0]
    assert (error["code"], error["parameter"]) == (code, parameter), error
    assert not edge.engine.calls


@pytest.mark.parametrize(("image", "words"), [
    (data_uri(b"not an image at all"), "is not a PNG, JPEG or WEBP image"),
    ("http://10.1.2.3/x.png", "refused"),
    ("", "must be an image"),
])
def test_a_bad_upload_is_refused_naming_image(edge: Edge, image: str, words: str) -> None:
    error = upload(edge, image)["errors"][0]
    assert (error["code"], error["parameter"], error["taskType"]) == (
        "invalidImage", "image", "imageUpload"), error
    assert words in error["message"]


def test_an_upload_goes_over_the_websocket_too(edge: Edge) -> None:
    with edge.client.websocket_connect("/v1") as ws:
        ws.send_json([{"taskType": "authentication", "apiKey": KEY}])
        ws.receive_json()
        ws.send_json([{"taskType": "imageUpload", "taskUUID": new_uuid(),
                       "image": data_uri(png(picture()))}])
        item = ws.receive_json()["data"][0]
        ws.send_json([inference(model=STANDARD, seedImage=item["imageUUID"], strength=0.4)])
        done = ws.receive_json()
    assert "errors" not in done, done
    assert edge.engine.calls[-1].strength == 0.4
    assert np.asarray(edge.engine.calls[-1].inputs[input_keys(
        edge.db("SELECT id FROM jobs")[0][0])[0]]).shape[2] == 3


@pytest.fixture
def wide_edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    """Sizes an outpainted 64 x 64 picture can reach (Runware's margins are multiples of 64)."""
    catalog = tmp_path / "wide.toml"
    catalog.write_text(PRESENT.replace('"16:9" = [64, 32]', '"16:9" = [128, 64]')
                       .replace('"9:16" = [32, 64]', '"9:16" = [64, 192]'))
    return make_edge(FakeEngine(), catalog_file=catalog, api_keys=[KEY])


def test_outpaint_extends_the_seed_and_repaints_only_the_new_area_and_the_blurred_edge(
    wide_edge: Edge,
) -> None:
    seed = picture(64, 64)
    task = inference(model=STANDARD, seedImage=data_uri(png(seed)), width=128, height=64,
                     outpaint={"left": 64, "blur": 8})
    reply = wide_edge.runware([task]).json()
    assert "errors" not in reply, reply
    (call,) = wide_edge.engine.calls
    assert (call.operation, call.strength) == (Operation.INPAINT, 1.0)  # drawn afresh
    (job_id,) = wide_edge.db("SELECT id FROM jobs")[0]
    image_key, mask_key = input_keys(job_id)
    image, mask = call.inputs[image_key], call.inputs[mask_key]
    assert image.shape[:2] == mask.shape[:2] == (64, 128)
    assert np.array_equal(image[:, 64:], np.asarray(seed))  # the seed on the right
    assert (image[:, :64] == image[:, 64:65]).all()  # its left column carried outwards
    assert (mask[:, :64 + 8] == 255).all() and (mask[:, 64 + 8:] == 0).all()
    (item,) = reply["data"]
    assert wide_edge.client.get(item["imageURL"]).status_code == 200


def test_outpaint_on_two_sides_keeps_the_seed_where_no_margin_was_asked(wide_edge: Edge) -> None:
    task = inference(model=STANDARD, seedImage=data_uri(png(picture(64, 64))), width=64,
                     height=192, outpaint={"top": 64, "bottom": 64, "blur": 4}, strength=0.9)
    reply = wide_edge.runware([task]).json()
    assert "errors" not in reply, reply
    (call,) = wide_edge.engine.calls
    assert call.strength == 0.9  # the client's own
    (job_id,) = wide_edge.db("SELECT id FROM jobs")[0]
    mask = call.inputs[input_keys(job_id)[1]]
    assert (mask[:68] == 255).all() and (mask[124:] == 255).all()
    assert (mask[68:124] == 0).all()  # no margin left or right: the seed's sides are kept


def test_without_a_size_outpaint_draws_the_model_size_nearest_its_shape(wide_edge: Edge) -> None:
    seed = picture(64, 64)
    task = inference(model=STANDARD, seedImage=data_uri(png(seed)), outpaint={"right": 64})
    task = {k: v for k, v in task.items() if k not in ("width", "height")}
    reply = wide_edge.runware([task]).json()
    assert "errors" not in reply, reply
    (call,) = wide_edge.engine.calls
    (job_id,) = wide_edge.db("SELECT id FROM jobs")[0]
    image = call.inputs[input_keys(job_id)[0]]
    assert image.shape[:2] == (64, 128)  # 64x64 and 64 to the right: 16:9 here
    assert np.array_equal(image[:, :64], np.asarray(seed))


def test_an_image_of_another_size_is_fitted_within_the_margins(wide_edge: Edge) -> None:
    """Runware's width/height are the image's size plus the margins; easel fits an image of
    another size within them (scaled to cover, centred) rather than refusing it."""
    seed = picture(96, 64)
    task = inference(model=STANDARD, seedImage=data_uri(png(seed)), width=128, height=64,
                     outpaint={"left": 64})
    reply = wide_edge.runware([task]).json()
    assert "errors" not in reply, reply
    (call,) = wide_edge.engine.calls
    (job_id,) = wide_edge.db("SELECT id FROM jobs")[0]
    image = call.inputs[input_keys(job_id)[0]]
    fitted = np.asarray(ImageOps.fit(seed, (64, 64), method=Image.Resampling.LANCZOS))
    assert image.shape[:2] == (64, 128) and np.array_equal(image[:, 64:], fitted)


def test_margins_that_leave_no_room_for_the_image_are_refused(wide_edge: Edge) -> None:
    task = inference(model=STANDARD, seedImage=data_uri(png(picture(64, 64))), width=64,
                     height=64, outpaint={"left": 64})
    error = wide_edge.runware([task]).json()["errors"][0]
    assert (error["code"], error["parameter"]) == ("invalidOutpaint", "outpaint"), error
    assert "leave no room for the image in the 64x64 drawn" in error["message"], error
    odd = inference(model=STANDARD, seedImage=data_uri(png(picture(64, 64))), width=128,
                    height=64, outpaint={"left": 32})
    error = wide_edge.runware([odd]).json()["errors"][0]
    assert error["message"] == "outpaint.left must be a multiple of 64, got 32", error
    assert not wide_edge.engine.calls


# -- upscale / imageUpscale ---------------------------------------------------------------------


def upscale_task(**fields: Any) -> dict[str, Any]:
    return {"taskType": "upscale", "taskUUID": new_uuid(), "upscaleFactor": 2,
            "inputImage": data_uri(png(picture())), "outputType": "URL", **fields}


@pytest.mark.parametrize("task_type", ["upscale", "imageUpscale"])
def test_an_upscale_of_an_upload_answers_under_its_own_task_type(edge: Edge,
                                                                  task_type: str) -> None:
    mine = uploaded(edge, png(picture()))
    reply = edge.runware([upscale_task(taskType=task_type, inputImage=mine["imageUUID"],
                                       upscaleFactor=4, includeCost=True)]).json()
    assert "errors" not in reply, reply
    (item,) = reply["data"]
    assert item["taskType"] == task_type and item["cost"] == 0.003, item
    (call,) = edge.engine.calls
    assert (call.operation, call.width, call.height) == (Operation.UPSCALE, 384, 256)
    assert call.source == "easel/tiny-swin2sr"  # no weights here: the stand-in
    served = Image.open(io.BytesIO(edge.client.get(item["imageURL"]).content))
    assert served.size == (384, 256)


def test_an_async_upscale_is_polled_like_any_task(edge: Edge) -> None:
    task = upscale_task(deliveryMethod="async", model="runware:503@1")
    ack = edge.runware([task]).json()["data"][0]
    assert ack == {"taskType": "upscale", "taskUUID": task["taskUUID"]}
    edge.wait(edge.db("SELECT id FROM jobs")[0][0])
    polled = edge.runware([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()
    (item,) = polled["data"]
    assert (item["taskType"], item["status"]) == ("upscale", "success"), item


@pytest.mark.parametrize(("fields", "code", "parameter"), [
    ({"upscaleFactor": 5}, "invalidUpscaleFactor", "upscaleFactor"),
    ({"upscaleFactor": "two"}, "invalidUpscaleFactor", "upscaleFactor"),
    ({"inputImage": None}, "missingInputImage", "inputImage"),
    ({"inputs": {"image": data_uri(png(picture()))}}, "conflictingImage", "inputs.image"),
    ({"inputImage": data_uri(b"not an image")}, "invalidInputImage", "inputImage"),
    ({"inputImage": data_uri(bomb_png(30_000, 30_000))}, "invalidInputImage", "inputImage"),
    ({"inputImage": "http://10.0.0.7/x.png"}, "invalidInputImage", "inputImage"),
    ({"targetMegapixels": 8}, "unsupportedTargetMegapixels", "targetMegapixels"),
    ({"settings": {"steps": 20}}, "unsupportedSettings", "settings"),
    ({"model": STANDARD}, "unsupportedUpscaleFactor", "upscaleFactor"),
    ({"model": "runware:999@1"}, "unknownModel", "model"),
    ({"positivePrompt": "a fox"}, "unsupportedParameter", "positivePrompt"),
])
def test_each_bad_upscale_is_refused_as_runware_words_it(
    edge: Edge, fields: dict[str, Any], code: str, parameter: str,
) -> None:
    task = {k: v for k, v in upscale_task(**fields).items() if v is not None}
    error = edge.runware([task]).json()["errors"][0]
    assert (error["code"], error["parameter"], error["taskType"]) == (
        code, parameter, "upscale"), error
    assert not edge.engine.calls


def test_an_upscaler_named_for_image_inference_is_refused(edge: Edge) -> None:
    error = edge.runware([inference(model="runware:504@1")]).json()["errors"][0]
    assert (error["code"], error["parameter"]) == ("missingSeedImage", "seedImage"), error
    assert "upscales an image" in error["message"]


def test_another_callers_upload_cannot_be_upscaled(edge: Edge) -> None:
    mine = uploaded(edge, png(picture()))
    error = edge.runware([upscale_task(inputImage=mine["imageUUID"])],
                         key=OTHER_KEY).json()["errors"][0]
    assert (error["code"], error["parameter"]) == ("invalidInputImage", "inputImage"), error
    assert "names no image of yours" in error["message"]
