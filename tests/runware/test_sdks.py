"""Runware's official Python SDKs, unchanged, against a live easel (only the URL differs).

Both packages import as `runware`, so each lives in its own virtual environment under .venvs/
(created on first use from PyPI) and runs as a subprocess.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.dialects.conftest import run_client
from tests.sdk_venvs import sdk_python
from tests.server_harness import Server

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).parent / "clients"
@pytest.fixture(scope="session")
def legacy() -> Path:
    return sdk_python("runware-legacy")


@pytest.fixture(scope="session")
def sdk() -> Path:
    return sdk_python("runware-sdk")


def _run(python: Path, script: str, args: dict[str, Any]) -> dict[str, Any]:
    return dict(run_client(python, str(CLIENTS / script), args))


def _check_images(images: list[dict[str, Any]], count: int) -> None:
    assert len(images) == count
    assert len({i["imageUUID"] for i in images}) == count  # no duplicates
    for image in images:
        assert httpx.get(image["imageURL"]).status_code == 200


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_legacy_websocket_sdk(server: Server, legacy: Path, mode: str) -> None:
    out = _run(legacy, "legacy_ws.py",
               {"url": server.ws_url, "mode": mode, "numberResults": 2, "seed": 5})
    _check_images(out["images"], 2)
    assert [i["seed"] for i in out["images"]] == [5, 6]
    assert all(i["cost"] == 0.02 for i in out["images"])
    if mode == "async":
        assert out["ack"].get("imageUUID") is None and out["ack"]["taskUUID"]


def test_legacy_sdk_base64(server: Server, legacy: Path) -> None:
    out = _run(legacy, "legacy_ws.py", {"url": server.ws_url, "outputType": "base64Data"})
    assert out["images"][0]["imageBase64Data"]


@pytest.mark.parametrize(("transport", "delivery"), [
    ("rest", "async"), ("rest", "sync"), ("websocket", "async"), ("websocket", "sync"),
])
def test_new_sdk(server: Server, sdk: Path, transport: str, delivery: str) -> None:
    url = server.url + "/v1" if transport == "rest" else server.ws_url
    task: dict[str, Any] = {"numberResults": 2, "seed": 9}
    if delivery == "sync":
        task["deliveryMethod"] = "sync"  # the SDK's default is async with polling
    out = _run(sdk, "sdk.py", {"transport": transport, "url": url, "task": task})
    _check_images(out["images"], 2)
    assert sorted(i["seed"] for i in out["images"]) == [9, 10]


@pytest.mark.parametrize("transport", ["rest", "websocket"])
def test_new_sdk_sees_validation_errors(server: Server, sdk: Path, transport: str) -> None:
    url = server.url + "/v1" if transport == "rest" else server.ws_url
    out = _run(sdk, "sdk.py", {"transport": transport, "url": url, "task": {"width": 65}})
    assert out["error"]["parameter"] == "width"
    assert "not a size" in out["error"]["message"]


# Sizes whose noisy stand-in PNGs make base64 items of about 0.6 MB (1:1: two of them pass
# the SDKs' 1 MiB frame limit together, not alone) and of over 1 MB (16:9: too large alone).
FRAME_SIZES = """
[sizes]
"1:1"  = [384, 384]
"3:4"  = [48, 64]
"4:3"  = [64, 48]
"9:16" = [32, 64]
"16:9" = [1024, 576]
"""


def test_new_sdk_gets_several_base64_images_one_frame_each(
    make_server: Any, sdk: Path, legacy: Path, tmp_path: Path
) -> None:
    """runware-sdk keeps websockets' 1 MiB frame limit: three base64 images of ~0.6 MB must
    come one per frame (as Runware sends them), sync and async; an image too large for any
    frame is a clear error naming outputType, not a dead connection, and comes whole over
    REST. The legacy SDK takes frames of any size: the same image comes to it whole."""
    catalog = tmp_path / "frames.toml"
    catalog.write_text(FRAME_SIZES)
    # The tiny stand-ins draw noise, which PNG cannot shrink: frames of the size this needs.
    srv = make_server("frames", small=False, EASEL_CATALOG_FILE=str(catalog),
                      EASEL_STAND_IN="tiny").start()
    task = {"numberResults": 3, "width": 384, "height": 384, "outputType": "base64Data",
            "outputFormat": "PNG", "seed": 1}
    for delivery in ("sync", "async"):
        out = _run(sdk, "sdk.py", {"transport": "websocket", "url": srv.ws_url,
                                   "task": {**task, "deliveryMethod": delivery}})
        assert "images" in out, out
        sizes = sorted(len(i["imageBase64Data"]) for i in out["images"])
        assert len(sizes) == 3 and sum(sizes) > 2**20 > sizes[-1], sizes
    big = _run(sdk, "sdk.py", {"transport": "websocket", "url": srv.ws_url, "task": {
        **task, "numberResults": 1, "width": 1024, "height": 576, "deliveryMethod": "sync"}})
    assert big["error"]["parameter"] == "outputType", big
    assert "ask for outputType URL" in big["error"]["message"]
    assert "transport='rest'" in big["error"]["message"]
    rest = _run(sdk, "sdk.py", {"transport": "rest", "url": srv.url + "/v1", "task": {
        **task, "numberResults": 1, "width": 1024, "height": 576, "deliveryMethod": "sync"}})
    (whole,) = rest["images"]
    assert len(whole["imageBase64Data"]) > 2**20, len(whole["imageBase64Data"])
    unlimited = _run(legacy, "legacy_ws.py", {
        "url": srv.ws_url, "numberResults": 1, "width": 1024, "height": 576, "seed": 1,
        "outputType": "base64Data", "outputFormat": "PNG"})
    (image,) = unlimited["images"]
    assert len(image["imageBase64Data"]) > 2**20  # one frame, past runware-sdk's limit
    pixels = [Image.open(io.BytesIO(base64.b64decode(i["imageBase64Data"]))).tobytes()
              for i in (image, whole)]
    assert pixels[0] == pixels[1]  # the same seed: the same image


def test_new_sdk_get_task_details(server: Server, sdk: Path) -> None:
    """getTaskDetails returns the task as it was sent and the response a poll gives."""
    import uuid

    task_uuid = str(uuid.uuid4())
    done = _run(sdk, "sdk.py", {"transport": "rest", "url": server.url + "/v1", "task": {
        "taskUUID": task_uuid, "deliveryMethod": "sync", "numberResults": 2, "seed": 3}})
    assert len(done["images"]) == 2
    for transport, url in (("rest", server.url + "/v1"), ("websocket", server.ws_url)):
        out = _run(sdk, "sdk.py", {"transport": transport, "url": url,
                                   "call": "get_task_details", "taskUUID": task_uuid})
        (details,) = out["images"]
        assert details["taskType"] == "getTaskDetails" and details["taskUUID"] == task_uuid
        (sent,) = details["request"]
        assert sent["numberResults"] == 2 and sent["positivePrompt"] == "a red fox in snow"
        items = details["response"]["data"]
        assert {i["imageUUID"] for i in items} == {i["imageUUID"] for i in done["images"]}
        assert {i["status"] for i in items} == {"success"}
    # Base64 results: the details carry URLs (one item; it must fit a WebSocket frame).
    b64_uuid = str(uuid.uuid4())
    made = _run(sdk, "sdk.py", {"transport": "websocket", "url": server.ws_url, "task": {
        "taskUUID": b64_uuid, "deliveryMethod": "sync", "outputType": "base64Data"}})
    assert made["images"][0]["imageBase64Data"]
    out = _run(sdk, "sdk.py", {"transport": "websocket", "url": server.ws_url,
                               "call": "get_task_details", "taskUUID": b64_uuid})
    (item,) = out["images"][0]["response"]["data"]
    assert item["imageURL"].startswith("http") and "imageBase64Data" not in item


def test_model_search_through_both_sdks(server: Server, sdk: Path, legacy: Path) -> None:
    """modelSearch lists what this server serves, in the shape each SDK parses (the legacy one
    into IModelSearchResponse, which requires its fields), over REST and WebSocket."""
    for transport, url in (("rest", server.url + "/v1"), ("websocket", server.ws_url)):
        out = _run(sdk, "sdk.py", {"transport": transport, "url": url, "call": "model_search",
                                   "search": {"search": "google:2@", "limit": 2}})
        (page,) = out["images"]
        assert (page["taskType"], page["totalResults"]) == ("modelSearch", 3), out
        assert [m["air"] for m in page["results"]] == ["google:2@1", "google:2@2"]
        assert all("Apache-2.0" in m["comment"] or "licen" in m["comment"].lower()
                   for m in page["results"])
    fast = _run(legacy, "legacy_ws.py", {"url": server.ws_url, "search": {
        "search": "google:2@3", "category": "checkpoint", "visibility": "public"}})["search"]
    (model,) = fast["results"]
    assert (fast["totalResults"], model["air"], model["private"]) == (1, "google:2@3", False)
    assert model["defaultWidth"] and model["defaultSteps"] and "fast" in model["tags"]
    none = _run(legacy, "legacy_ws.py", {"url": server.ws_url, "search": {"category": "lora"}})
    assert none["search"]["totalResults"] == 0 and none["search"]["results"] == []
    bad = _run(sdk, "sdk.py", {"transport": "rest", "url": server.url + "/v1",
                               "call": "model_search", "search": {"limit": 500}})
    assert "limit" in bad["error"]["message"], bad


def test_steps_cfg_scale_and_scheduler(server: Server, sdk: Path) -> None:
    """Runware's generation controls, bounded per backend by the catalog and named in errors."""
    url = server.url + "/v1"

    def run(**task: Any) -> dict[str, Any]:
        return _run(sdk, "sdk.py", {"transport": "rest", "url": url, "task": {
            "model": "google:2@2", "deliveryMethod": "sync", "seed": 8, **task}})

    plain, tuned = run(), run(steps=3, CFGScale=6.5, scheduler="FlowMatchEulerDiscreteScheduler")
    assert "images" in plain and "images" in tuned, (plain, tuned)
    images = [httpx.get(o["images"][0]["imageURL"]).content for o in (plain, tuned)]
    assert images[0] != images[1]
    for task, parameter, words in (
        ({"steps": 101}, "steps", "2..100"),
        ({"CFGScale": 30}, "CFGScale", "1..20"),
        ({"scheduler": "Euler a"}, "scheduler", "not available"),
    ):
        out = run(**task)
        assert out["error"]["parameter"] == parameter and words in out["error"]["message"], out


def test_a_reported_seed_is_always_a_valid_input(server: Server, sdk: Path) -> None:
    """Seeds span 0..2^32-1: seed 4294967295 with two results reports 0 for the second, and
    that seed reproduces it."""
    url = server.url + "/v1"
    first = _run(sdk, "sdk.py", {"transport": "rest", "url": url, "task": {
        "deliveryMethod": "sync", "numberResults": 2, "seed": 4294967295}})
    seeds = sorted(i["seed"] for i in first["images"])
    assert seeds == [0, 4294967295]
    again = _run(sdk, "sdk.py", {"transport": "rest", "url": url, "task": {
        "deliveryMethod": "sync", "seed": 0}})
    by_seed = {i["seed"]: i["imageURL"] for i in first["images"]}
    pixels = [Image.open(io.BytesIO(httpx.get(u).content)).convert("RGB").tobytes()
              for u in (by_seed[0], again["images"][0]["imageURL"])]
    assert pixels[0] == pixels[1]


def _png_b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_both_sdks_upload_an_image_and_draw_from_it(
    server: Server, sdk: Path, legacy: Path,
) -> None:
    """The legacy SDK uploads a local file (uploadImage), then inpaints it with a mask it reads
    from a local path; the new one uploads a data URI (image_upload) and names it as seedImage,
    over REST and the WebSocket."""
    photo = Image.new("RGB", (96, 64), (200, 40, 40))
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (48, 0, 96, 64))
    out = _run(legacy, "legacy_ws.py", {
        "url": server.ws_url, "width": 64, "height": 64, "model": "google:2@1",
        "edit": {"image": _png_b64(photo), "mask": _png_b64(mask), "strength": 0.6}})
    assert "error" not in out, out
    assert len(out["upload"]["imageUUID"]) == 36
    assert httpx.get(out["upload"]["imageURL"]).status_code == 200
    _check_images(out["images"], 1)
    for transport, url in (("rest", server.url + "/v1"), ("websocket", server.ws_url)):
        done = _run(sdk, "sdk.py", {
            "transport": transport, "url": url, "call": "image_upload",
            "image": "data:image/png;base64," + _png_b64(photo),
            "task": {"model": "google:2@1", "strength": 0.5}})
        assert "error" not in done, done
        _check_images(done["images"], 1)
