"""Upscaling through easel's API: an image enlarged 2, 3 or 4 times by the upscale tier's model,
shrunk first when the output would pass the largest side; no prompt; every refusal in easel's
shape naming the field. The fake engine shows what the engine is handed (it repeats pixels);
the real engine on the tiny Swin2SR shows the sizes and the pixels of the model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from easel.domain.generation import Operation
from easel.domain.submission import MAX_UPSCALED_SIDE
from tests.core.test_input_images import bomb_png
from tests.edge.conftest import Edge
from tests.edge.test_images_in import AUTH, data_uri, output, picture, png
from tests.fakes import FakeEngine

UPSCALER = "easel/upscale"


@pytest.fixture
def edge(make_edge: Callable[..., Edge]) -> Edge:
    return make_edge(FakeEngine())


def submit(edge: Edge, **fields: Any) -> Any:
    body = {"model": UPSCALER, "image": data_uri(png(picture())), "upscale": 2,
            "output_format": "png", **fields}
    return edge.client.post("/easel/jobs", json=body, headers=AUTH)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_an_upscale_hands_the_engine_the_image_as_sent_and_its_size_times_the_factor(
    edge: Edge, factor: int,
) -> None:
    out = output(edge, submit(edge, upscale=factor))
    (call,) = edge.engine.calls
    assert (call.operation, call.upscale_factor) == (Operation.UPSCALE, factor)
    assert (call.width, call.height) == (96 * factor, 64 * factor)
    (spec,) = call.images
    assert spec.init is not None
    assert np.array_equal(call.inputs[spec.init], np.asarray(picture()))  # not resampled
    assert out.shape == (64 * factor, 96 * factor, 3)
    # The fake engine repeats each pixel: what came back is the input, enlarged.
    assert np.array_equal(out[::factor, ::factor], np.asarray(picture()))


def test_an_output_past_the_largest_side_shrinks_the_input_first(edge: Edge) -> None:
    wide = picture(1500, 600)  # x4 would be 6000 wide
    out = output(edge, submit(edge, image=data_uri(png(wide)), upscale=4))
    (call,) = edge.engine.calls
    assert call.width == MAX_UPSCALED_SIDE and call.width % 4 == 0
    assert call.height == 4 * int(600 * (MAX_UPSCALED_SIDE // 4) / 1500)
    assert out.shape == (call.height, call.width, 3)


def test_the_job_says_what_it_did_and_its_cost(edge: Edge) -> None:
    reply = submit(edge)
    assert reply.status_code == 202, reply.text
    job = edge.wait(reply.json()["job"])
    view = edge.client.get(f"/easel/jobs/{job.id}", headers=AUTH).json()
    assert view["status"] == "completed"
    assert view["backend"] == "easel/tiny-swin2sr"  # no weights here: the labelled stand-in
    assert "swin2SR" in view["stand_in_reason"]
    assert (view["width"], view["height"]) == (192, 128)


@pytest.mark.parametrize(("fields", "status", "parameter", "words"), [
    ({"upscale": 5}, 400, "upscale", "upscale"),
    ({"upscale": None}, 400, "image", "only upscales; ask for an upscale"),
    ({"prompt": "a fox"}, 400, "prompt", "not both"),
    ({"aspect_ratio": "16:9"}, 400, "aspect_ratio", "its shape times the factor"),
    ({"enhance_prompt": True}, 400, "enhance_prompt", "not both"),
    ({"image": None}, 400, "image", "an upscale enlarges an image"),
    ({"strength": 0.5}, 400, "strength", "not both"),
    ({"mask": "x"}, 400, "mask", "not both"),
    ({"model": "google/imagen4"}, 400, "upscale", "does not upscale; name an upscaler"),
    ({"image": data_uri(b"not an image at all")}, 400, "image", "image"),
    ({"image": data_uri(bomb_png(30_000, 30_000))}, 400, "image", "pixels"),
    ({"image": "https://10.0.0.1/x.png"}, 400, "image", "private"),
])
def test_refusals_name_the_field(edge: Edge, fields: dict[str, Any], status: int,
                                 parameter: str, words: str) -> None:
    body = {"model": UPSCALER, "image": data_uri(png(picture())), "upscale": 2, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    reply = edge.client.post("/easel/jobs", json=body, headers=AUTH)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["parameter"] == parameter, error
    assert words in error["message"], error
    assert not edge.engine.calls


def test_an_upscaler_named_for_a_text_to_image_job_is_refused(edge: Edge) -> None:
    reply = edge.client.post("/easel/jobs", json={"model": UPSCALER, "prompt": "a fox"},
                             headers=AUTH)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["parameter"] == "image"


# -- the pixels: the real engine on the tiny Swin2SR ----------------------------------------


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Any:
    from easel.engine import Engine

    return Engine(model_cache, device="cpu", max_loaded=1)


@pytest.mark.parametrize("factor", [2, 4])
def test_the_real_engine_doubles_and_quadruples_the_size(
    make_edge: Callable[..., Edge], engine: Any, factor: int,
) -> None:
    real = make_edge(engine)
    out = output(real, submit(real, upscale=factor))
    assert out.shape == (64 * factor, 96 * factor, 3)


def test_x4_is_the_models_own_output(make_edge: Callable[..., Edge], engine: Any) -> None:
    """What the job returns is transformers' Swin2SR called directly on the input (PNG, so
    exact up to the rounding to 8 bits)."""
    import torch

    real = make_edge(engine)
    out = output(real, submit(real, upscale=4))
    model = engine.pipeline("easel/tiny-swin2sr").model
    pixels = torch.from_numpy(np.array(picture())).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        direct = model(pixel_values=pixels).reconstruction.clamp(0, 1)
    expected = (direct[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_a_task_id_used_again_with_another_factor_names_the_id_sent(edge: Edge) -> None:
    assert submit(edge, task_id="my-upscale-1").status_code == 202
    reply = submit(edge, task_id="my-upscale-1", upscale=4)
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["parameter"] == "task_id" and "task_id my-upscale-1 was already used" in \
        error["message"], error


def test_the_model_list_says_what_an_upscaler_takes(edge: Edge) -> None:
    listed = edge.client.get("/easel/models", headers=AUTH).json()
    (model,) = [m for t in listed["tiers"] for m in t["models"] if m["id"] == UPSCALER]
    assert (model["upscales"], model["upscale_factors"], model["max_side"]) == (
        True, [2, 3, 4], MAX_UPSCALED_SIDE)
