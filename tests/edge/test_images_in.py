"""Images in through easel's API: image-to-image and inpainting, the inputs decoded, fitted to
the job's size and kept in the image store only until the job ends; every refusal in easel's
shape naming the field. The fake engine shows what the engine is handed; the real engine on
the tiny pipelines shows the pixels."""

from __future__ import annotations

import base64
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
from tests.core.test_input_images import bomb_png
from tests.core.test_loras import PRESENT
from tests.edge.conftest import KEY, Edge
from tests.fakes import FakeEngine

AUTH = {"Authorization": f"Bearer {KEY}"}
FAST, STANDARD, ULTRA = "google/imagen4-fast", "google/imagen4", "google/imagen4-ultra"


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def picture(width: int = 96, height: int = 64) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    pixels = np.stack([np.tile(x, (height, 1)), np.tile(x[::-1], (height, 1)),
                       np.full((height, width), 120, np.uint8)], axis=-1)
    return Image.fromarray(pixels)


def half_mask(width: int = 96, height: int = 64, transparent: bool = False) -> Image.Image:
    """The right half repainted: white there, black elsewhere (or a transparent right half)."""
    if transparent:
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[..., 3] = 255
        rgba[:, width // 2:, 3] = 0
        return Image.fromarray(rgba, "RGBA")
    levels = np.zeros((height, width), np.uint8)
    levels[:, width // 2:] = 255
    return Image.fromarray(levels, "L")


@pytest.fixture
def edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    return make_edge(FakeEngine(), catalog_file=catalog)


def submit(edge: Edge, **fields: Any) -> Any:
    # 1:1: a 96x64 input is fitted to the square (without it, the input's shape is drawn).
    body = {"model": STANDARD, "prompt": "a red fox", "seed": 3, "output_format": "png",
            "aspect_ratio": "1:1", **fields}
    return edge.client.post("/easel/jobs", json=body, headers=AUTH)


def test_image_to_image_hands_the_engine_the_fitted_input_and_forgets_it_after(
    edge: Edge,
) -> None:
    reply = submit(edge, image=data_uri(png(picture())), strength=0.3)
    assert reply.status_code == 202, reply.text
    job = edge.wait(reply.json()["job"])
    (call,) = edge.engine.calls
    assert (call.operation, call.strength) == (Operation.IMAGE, 0.3)
    image_key, _ = input_keys(job.id)
    assert [spec.init for spec in call.images] == [image_key]
    fitted = np.asarray(ImageOps.fit(picture(), (64, 64), method=Image.Resampling.LANCZOS))
    assert np.array_equal(call.inputs[image_key], fitted)
    view = edge.client.get(f"/easel/jobs/{job.id}", headers=AUTH).json()
    assert (view["status"], view["operation"], view["strength"]) == ("completed", "image", 0.3)
    # Kept for the run only: gone once the job ended.
    assert build_blobs(edge.settings).get(image_key) is None


@pytest.mark.parametrize("transparent", [False, True])
def test_inpainting_hands_the_engine_the_mask_white_or_transparent_repainted(
    edge: Edge, transparent: bool,
) -> None:
    reply = submit(edge, model=FAST, image=data_uri(png(picture())),
                   mask=data_uri(png(half_mask(transparent=transparent))))
    assert reply.status_code == 202, reply.text
    job = edge.wait(reply.json()["job"])
    (call,) = edge.engine.calls
    assert (call.operation, call.strength) == (Operation.INPAINT, 0.8)  # the default strength
    _, mask_key = input_keys(job.id)
    mask = call.inputs[mask_key]
    assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
    # 96x64 fitted to 64x64 keeps the middle: the repainted half starts at column 32.
    assert (mask[:, 31] == 0).all() and (mask[:, 32] == 255).all()


@pytest.mark.parametrize(("fields", "parameter", "words"), [
    ({"image": data_uri(b"GIF89a" + b"\0" * 40)}, "image", "is not a PNG, JPEG or WEBP image"),
    ({"image": data_uri(bomb_png(30_000, 30_000))}, "image", "too many pixels"),
    ({"image": "not base64 !"}, "image", "neither a URL, an image id nor base64"),
    ({"image": data_uri(png(picture())), "mask": data_uri(png(half_mask(48, 32)))}, "mask",
     "mask is 48x32 and the image 96x64: they must be the same size"),
    ({"image": data_uri(png(picture())), "strength": 0}, "strength", "above 0 and at most 1"),
    ({"image": data_uri(png(picture())), "strength": 1.5}, "strength", "above 0"),
    ({"mask": data_uri(png(half_mask()))}, "mask", "mask needs an image to draw from"),
    ({"outpaint": {"left": 32}}, "outpaint", "outpaint needs an image to draw from"),
    ({"image": data_uri(png(picture())), "mask": data_uri(png(half_mask())),
      "outpaint": {"left": 32}}, "mask", "outpaint makes its own mask"),
    ({"image": data_uri(png(picture())), "outpaint": {}}, "outpaint", "extends nothing"),
    ({"image": data_uri(png(picture())), "outpaint": {"left": 64}}, "outpaint",
     "the margins leave no room for the image in the 64x64 drawn"),
    ({"model": FAST, "image": data_uri(png(picture()))}, "image",
     "cannot draw from an image without a mask"),
    ({"image": "http://10.0.0.7/a.png"}, "image", "refused"),
    ({"image": "3f2c1a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f"}, "image",
     "names no image of yours"),
])
def test_each_bad_input_is_refused_naming_its_field(
    edge: Edge, fields: dict[str, Any], parameter: str, words: str,
) -> None:
    reply = submit(edge, **fields)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["parameter"] == parameter and words in error["message"], error
    assert not edge.engine.calls


def test_a_task_id_sent_again_with_another_image_is_a_conflict(edge: Edge) -> None:
    first = submit(edge, image=data_uri(png(picture())), task_id="edit-1")
    again = submit(edge, image=data_uri(png(picture())), task_id="edit-1")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["job"] == first.json()["job"]
    other = submit(edge, image=data_uri(png(picture().rotate(180))), task_id="edit-1")
    assert other.status_code == 409, other.text



# -- the pixels: the real engine on the Standard tier's tiny pipeline (Z-Image) -----------------


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Any:
    from easel.engine import Engine

    return Engine(model_cache, device="cpu", max_loaded=1)


@pytest.fixture
def real(make_edge: Callable[..., Edge], engine: Any, tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT + '\n[backends.qwen-image]\nsource = "easel/tiny-qwenimage"\n'
                       'steps = 4\n')
    return make_edge(engine, catalog_file=catalog)


def drawn(edge: Edge, **fields: Any) -> np.ndarray:
    return output(edge, submit(edge, **fields))


def output(edge: Edge, reply: Any) -> np.ndarray:
    """The first image of the job `reply` acknowledged, once it has completed."""
    assert reply.status_code == 202, reply.text
    job = edge.wait(reply.json()["job"])
    view = edge.client.get(f"/easel/jobs/{job.id}", headers=AUTH).json()
    assert view["status"] == "completed", view
    data = edge.client.get(view["outputs"][0]["url"], headers=AUTH).content
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_inpainting_keeps_every_pixel_outside_the_mask(real: Edge) -> None:
    out = drawn(real, image=data_uri(png(picture())), mask=data_uri(png(half_mask())),
                strength=0.9)
    fitted = np.asarray(ImageOps.fit(picture(), (64, 64), method=Image.Resampling.LANCZOS))
    assert np.array_equal(out[:, :32], fitted[:, :32])  # the kept half, exactly
    assert not np.array_equal(out[:, 32:], fitted[:, 32:])  # the repainted half changed


def test_a_low_strength_stays_near_the_input_and_a_high_one_goes_far(real: Edge) -> None:
    """On the Ultra tier's tiny Qwen-Image. Its untrained VAE cannot give an image back, so
    "the input" is the pipeline's own round trip of it (strength 0.01)."""
    image = data_uri(png(picture()))
    reference = drawn(real, model=ULTRA, image=image, strength=0.01)
    near = drawn(real, model=ULTRA, image=image, strength=0.1)
    far = drawn(real, model=ULTRA, image=image, strength=0.9)

    def distance(a: np.ndarray) -> float:
        return float(np.abs(a.astype(int) - reference.astype(int)).mean())

    assert distance(near) * 4 < distance(far)


def test_without_an_aspect_ratio_the_images_shape_is_drawn(edge: Edge) -> None:
    body = {"model": STANDARD, "prompt": "a red fox", "image": data_uri(png(picture()))}
    reply = edge.client.post("/easel/jobs", json=body, headers=AUTH)
    assert reply.status_code == 202, reply.text
    edge.wait(reply.json()["id"])
    (call,) = edge.engine.calls
    assert call.width > call.height  # 96x64: the model's nearest one-pass size to 3:2


def test_outpaint_fits_the_image_within_the_margins_and_draws_them(real: Edge) -> None:
    """easel's API: the image (96x64) is fitted within the output (64x64) less the margins (32
    on the left), every pixel of it kept; the margin is drawn by the tiny Z-Image."""
    out = drawn(real, image=data_uri(png(picture())), outpaint={"left": 32})
    fitted = np.asarray(ImageOps.fit(picture(), (32, 64), method=Image.Resampling.LANCZOS))
    assert np.array_equal(out[:, 32:], fitted)  # the image, exactly
    smear = np.repeat(fitted[:, :1], 32, axis=1).astype(int)
    assert np.abs(out[:, :32].astype(int) - smear).mean() > 5  # the margin drawn
