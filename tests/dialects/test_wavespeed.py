"""WaveSpeed specifics beyond the shared contract (protocols.md §2, §10.4)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.dialects.conftest import KEY, run_client
from tests.dialects.test_contract import fetch, pixels, same_image
from tests.server_harness import Server

AUTH = {"Authorization": f"Bearer {KEY}"}


def submit(srv: Server, model: str, body: dict[str, Any], **params: str) -> dict[str, Any]:
    reply = httpx.post(f"{srv.url}/api/v3/{model}", json=body, headers=AUTH, params=params,
                       timeout=120)
    assert reply.status_code == 200, reply.text
    out: dict[str, Any] = reply.json()
    assert out["code"] == 200 and out["message"] == "success"
    return dict(out["data"])


def poll(srv: Server, url: str) -> dict[str, Any]:
    reply = httpx.get(url, headers=AUTH, timeout=30)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["data"])


def test_async_lifecycle_and_both_poll_paths(live: Server) -> None:
    data = submit(live, "google/imagen4", {"prompt": "a red kite", "aspect_ratio": "16:9",
                                           "resolution": "2k", "seed": 3})
    assert data["status"] in ("created", "processing") and data["outputs"] == []
    assert data["model"] == "google/imagen4" and data["error"] == ""
    assert data["input"]["resolution"] == "2k" and data["input"]["num_images"] == 1
    assert data["urls"]["get"].endswith(f"/api/v3/predictions/{data['id']}/result")
    done = httpx.post(f"{live.url}/api/v3/google/imagen4", headers=AUTH, timeout=120, json={
        "prompt": "a red kite", "aspect_ratio": "16:9", "resolution": "2k", "seed": 3,
        "enable_sync_mode": True}).json()["data"]
    assert done["status"] == "completed"
    polled = poll(live, data["urls"]["get"])
    for _ in range(300):
        if polled["status"] == "completed":
            break
        polled = poll(live, data["urls"]["get"])
    assert polled["status"] == "completed" and polled["timings"]["inference"] >= 0
    assert polled["has_nsfw_contents"] == [False]
    (image,) = polled["outputs"]
    assert Image.open(io.BytesIO(fetch(image))).size == (128, 64)  # 16:9 at 2K, test sizes
    assert poll(live, f"{live.url}/api/v3/predictions/{data['id']}")["id"] == data["id"]


def test_refused_request_is_a_failed_task_that_polls(live: Server, sdks: dict[str, Path]) -> None:
    data = submit(live, "google/imagen4", {"prompt": "x", "num_images": 5})
    assert (data["status"], data["code"]) == ("failed", 1401)
    assert "num_images" in data["error"]
    assert poll(live, data["urls"]["get"]) == data
    missing = submit(live, "google/imagen4", {"aspect_ratio": "1:1"})
    assert (missing["status"], missing["code"]) == ("failed", 1400)
    out = run_client(sdks["wavespeed"], "wavespeed_client.py", {
        "url": live.url, "key": KEY, "model": "google/imagen4", "input": {"prompt": "x",
                                                                          "foo": 1}})
    assert not out["ok"] and "foo is not a parameter" in out["error"]


def test_negative_prompt_on_fast_is_ignored_not_failed(live: Server, sdks: dict[str, Path]) -> None:
    """WaveSpeed documents negative_prompt on every Imagen 4 model; Fast's backend has no use
    for it, so it is reported ignored and the task completes (through the SDK as a user runs
    it, then raw for the header)."""
    body = {"prompt": "a pear", "negative_prompt": "blurry"}
    out = run_client(sdks["wavespeed"], "wavespeed_client.py", {
        "url": live.url, "key": KEY, "model": "google/imagen4-fast", "input": body})
    assert out["ok"] and len(out["outputs"]) == 1, out
    reply = httpx.post(f"{live.url}/api/v3/google/imagen4-fast", json=body, headers=AUTH)
    assert reply.headers["x-easel-ignored-fields"] == "negative_prompt"
    assert reply.json()["data"]["input"]["negative_prompt"] == "blurry"
    taken = httpx.post(f"{live.url}/api/v3/google/imagen4-ultra", json=body, headers=AUTH)
    assert "x-easel-ignored-fields" not in taken.headers


def test_base64_output_is_bare_in_polls_and_sync_mode(live: Server, sdks: dict[str, Path]) -> None:
    """WaveSpeed's docs: decode the entire string as is (no data: prefix)."""
    for sync in (False, True):
        out = run_client(sdks["wavespeed"], "wavespeed_client.py", {
            "url": live.url, "key": KEY, "model": "google/imagen4-fast", "sync": sync,
            "input": {"prompt": "a pear", "enable_base64_output": True, "output_format": "png"}})
        assert out["ok"], out
        (ref,) = out["outputs"]
        assert not ref.startswith("data:")
        assert Image.open(io.BytesIO(base64.b64decode(ref, validate=True))).format == "PNG"


def test_a_webhook_with_base64_output_is_refused(live: Server, sdks: dict[str, Path]) -> None:
    body = {"prompt": "a pear", "enable_base64_output": True}
    reply = httpx.post(f"{live.url}/api/v3/google/imagen4-fast", json=body, headers=AUTH,
                       params={"webhook": "https://example.com/hook"})
    assert reply.status_code == 400
    assert "webhook callback does not support base64 output" in reply.json()["error"]
    out = run_client(sdks["wavespeed"], "wavespeed_client.py", {
        "url": live.url, "key": KEY, "model": "google/imagen4-fast",
        "input": {**body, "webhook_url": "https://example.com/hook"}})
    assert not out["ok"] and "does not support base64 output" in out["error"]


def test_ids_codes_and_timestamps_as_documented(live: Server) -> None:
    """32-hex ids, data.code 0 on success, one created_at from submit to poll, "2K" as "2k"."""
    data = submit(live, "google/imagen4", {"prompt": "a red kite", "resolution": "2K"})
    assert len(data["id"]) == 32 and int(data["id"], 16) >= 0
    assert data["code"] == 0 and data["input"]["resolution"] == "2k"
    polled = poll(live, data["urls"]["get"])
    assert polled["id"] == data["id"] and polled["created_at"] == data["created_at"]
    while polled["status"] != "completed":
        polled = poll(live, data["urls"]["get"])
    assert polled["code"] == 0 and polled["created_at"] == data["created_at"]


def test_seeds_up_to_the_documented_maximum_stay_valid(live: Server, sdks: dict[str, Path]) -> None:
    """-1 ~ 9999999999; image i of seed s gets s+i, wrapping to 0 past the maximum, so each
    reported seed reproduces its image when sent again."""
    # PNG: a batched run may round a pixel one level off (same_image), which JPEG would blur.
    first = submit(live, "google/imagen4", {"prompt": "a red kite", "seed": 9999999999,
                                            "num_images": 2, "enable_sync_mode": True,
                                            "output_format": "png"})
    again = submit(live, "google/imagen4", {"prompt": "a red kite", "seed": 0,
                                            "enable_sync_mode": True, "output_format": "png"})
    assert first["status"] == again["status"] == "completed"
    assert same_image(fetch(first["outputs"][1]), fetch(again["outputs"][0]))
    sdk = run_client(sdks["wavespeed"], "wavespeed_client.py", {
        "url": live.url, "key": KEY, "model": "google/imagen4",
        "input": {"prompt": "a red kite", "seed": 9999999999, "num_images": 2,
                  "output_format": "png"}})
    assert sdk["ok"], sdk
    assert same_image(fetch(sdk["outputs"][1]), fetch(again["outputs"][0]))
    over = submit(live, "google/imagen4", {"prompt": "a red kite", "seed": 10000000000})
    assert over["status"] == "failed" and "seed" in over["error"]


def test_sampling_controls_within_the_catalogs_bounds(live: Server) -> None:
    body = {"prompt": "a red kite", "seed": 4, "enable_sync_mode": True}
    plain = submit(live, "google/imagen4-ultra", body)
    tuned = submit(live, "google/imagen4-ultra", {**body, "num_inference_steps": 3,
                                                  "guidance_scale": 7.0})
    assert plain["status"] == tuned["status"] == "completed"
    assert tuned["input"]["num_inference_steps"] == 3
    assert "num_inference_steps" not in plain["input"]
    assert pixels(fetch(plain["outputs"][0])) != pixels(fetch(tuned["outputs"][0]))
    too_many = submit(live, "google/imagen4-ultra", {**body, "num_inference_steps": 500})
    assert too_many["status"] == "failed"
    assert "num_inference_steps must be an integer 2..100" in too_many["error"]
    distilled = submit(live, "google/imagen4-fast", {**body, "guidance_scale": 2.0})
    assert distilled["status"] == "failed" and "guidance_scale" in distilled["error"]


def test_endpoints_easel_does_not_offer_answer_in_wavespeeds_shape(
    live: Server, sdks: dict[str, Path]
) -> None:
    balance = httpx.get(f"{live.url}/api/v3/balance", headers=AUTH)
    assert balance.status_code == 404 and "easel does not offer" in balance.json()["message"]
    unknown = httpx.get(f"{live.url}/api/v3/some/other/thing", headers=AUTH)
    assert unknown.status_code == 405 and unknown.json()["code"] == 405
    assert "easel does not offer GET" in unknown.json()["message"]
    listed = httpx.get(f"{live.url}/api/v3/models", headers=AUTH).json()["data"]
    assert "google/imagen4-ultra" in {m["model_id"] for m in listed}


def test_webhook_is_validated(live: Server) -> None:
    ok = submit(live, "google/imagen4-fast", {"prompt": "x", "num_images": 5},
                webhook="https://example.com/hook")
    assert ok["code"] == 1401  # refused for num_images, not for the webhook
    bad = submit(live, "google/imagen4-fast", {"prompt": "x"}, webhook="not a url")
    assert bad["status"] == "failed" and "webhook" in bad["error"]
    bad_body = submit(live, "google/imagen4-fast", {"prompt": "x", "webhook_url": "ftp://h/x"})
    assert bad_body["status"] == "failed" and "webhook_url" in bad_body["error"]


def test_http_level_errors(live: Server) -> None:
    unknown = httpx.post(f"{live.url}/api/v3/google/imagen9", json={"prompt": "x"}, headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["code"] == 404
    gone = httpx.get(f"{live.url}/api/v3/predictions/nope/result", headers=AUTH)
    assert gone.status_code == 404 and "nope" in gone.json()["message"]
    assert httpx.get(f"{live.url}/api/v3/predictions/nope/result").status_code == 401


def test_sync_mode_timeout_answers_5004(make_server: Any, sdks: dict[str, Path]) -> None:
    srv = make_server("no-worker", EASEL_API_KEYS=KEY, EASEL_RUN_WORKER="false",
                      EASEL_SYNC_TIMEOUT="0.3").start()
    data = httpx.post(f"{srv.url}/api/v3/google/imagen4-fast", headers=AUTH, timeout=30,
                      json={"prompt": "x", "enable_sync_mode": True}).json()["data"]
    assert (data["status"], data["code"]) == ("processing", 5004)
    assert "Sync mode timed out" in data["error"]
    assert poll(srv, data["urls"]["get"])["status"] == "created"
    out = run_client(sdks["wavespeed"], "wavespeed_client.py", {
        "url": srv.url, "key": KEY, "model": "google/imagen4-fast", "input": {"prompt": "x"},
        "sync": True})
    assert not out["ok"] and "Sync mode timed out" in out["error"]


@pytest.mark.parametrize("sdk", ["wavespeed", "wavespeed-1"])
def test_the_sdk_uploads_an_image_and_a_google_edit_model_edits_it(
    live: Server, sdks: dict[str, Path], sdk: str,
) -> None:
    """SDK 2.x's ticket flow (a ticket, then a PUT to its signed URL) and 1.x's binary form:
    the download_url serves the image, and an edit model reads it from the store."""
    photo = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 140, 90)).save(photo, "PNG")
    out = run_client(sdks[sdk], "wavespeed_client.py", {
        "url": live.url, "key": KEY, "call": "upload",
        "image": base64.b64encode(photo.getvalue()).decode(),
        "edit": "google/gemini-2.5-flash-image/edit"})
    assert out["ok"], out
    served = httpx.get(out["url"])
    assert served.status_code == 200 and served.content == photo.getvalue()
    assert len(out["outputs"]) == 1 and httpx.get(out["outputs"][0]).status_code == 200


def test_uploads_refuse_what_is_not_an_image_and_urls_easel_did_not_sign(live: Server) -> None:
    garbage = httpx.post(f"{live.url}/api/v3/media/upload/binary", headers=AUTH,
                         files={"file": ("a.png", b"not an image")})
    assert garbage.status_code == 400 and "is not a PNG, JPEG or WEBP" in garbage.text
    text = httpx.post(f"{live.url}/api/v3/media/uploads", headers=AUTH,
                      json={"filename": "notes.txt", "size": 10})
    assert text.status_code == 400 and "images only" in text.text
    ticket = httpx.post(f"{live.url}/api/v3/media/uploads", headers=AUTH,
                        json={"filename": "a.png", "size": 10}).json()["data"]
    forged = ticket["upload"]["url"].replace("signature=", "signature=00")
    assert httpx.put(forged, content=b"x").status_code == 403
    other = ticket["upload"]["url"].replace("caller=", "caller=someone-else")
    assert httpx.put(other, content=b"x").status_code == 403
