"""WaveSpeed specifics beyond the shared contract (protocols.md §2, §10.4)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.dialects.conftest import KEY, run_client
from tests.dialects.test_contract import fetch
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


def test_base64_output_through_the_sdk(live: Server, sdks: dict[str, Path]) -> None:
    out = run_client(sdks["wavespeed"], "wavespeed_client.py", {
        "url": live.url, "key": KEY, "model": "google/imagen4-fast",
        "input": {"prompt": "a pear", "enable_base64_output": True, "output_format": "png"}})
    assert out["ok"], out
    (ref,) = out["outputs"]
    assert ref.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(fetch(ref))).format == "PNG"


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
