"""OpenAI images + AIML specifics beyond the shared contract (protocols.md §3, §4)."""

from __future__ import annotations

import base64
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.dialects.conftest import KEY, run_client
from tests.server_harness import Server

URL = "/v1/images/generations"
AUTH = {"Authorization": f"Bearer {KEY}"}


def sdk(srv: Server, sdks: dict[str, Path], **spec: Any) -> Any:
    return run_client(sdks["openai"], "openai_client.py", {"url": srv.url, "key": KEY, **spec})


def test_aiml_fields_through_extra_body(live: Server, sdks: dict[str, Path]) -> None:
    out = sdk(live, sdks, kwargs={"model": "google/imagen-4.0-fast-generate-001",
                                  "prompt": "a heron"},
              extra_body={"num_images": 2, "aspect_ratio": "16:9",
                          "convert_base64_to_url": False, "seed": 11, "enhance_prompt": True})
    assert out["ok"], out
    reply = out["response"]
    assert len(reply["data"]) == 2
    for item in reply["data"]:
        assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (64, 32)
    # price per image from the catalog (fast: $0.02) at AIML's 2,000,000 credits per dollar
    assert reply["meta"]["usage"]["credits_used"] == 80000
    assert reply["size"] == "64x32"


def test_size_maps_to_the_nearest_imagen_size_and_urls_resolve(live: Server) -> None:
    reply = httpx.post(f"{live.url}{URL}", headers=AUTH, timeout=120, json={
        "model": "imagen-4", "quality": "low", "prompt": "a heron", "size": "1536x1024",
        "style": "vivid"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "imagen-4.0-fast-generate-001" and body["quality"] == "low"
    assert body["size"] == "64x48"  # 1536x1024 -> 4:3 (test catalog sizes)
    assert reply.headers["x-easel-ignored-fields"] == "style"
    image = httpx.get(body["data"][0]["url"], timeout=30)
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).format == "PNG"


def test_aiml_prompt_limit_comes_from_the_catalog(live: Server, sdks: dict[str, Path]) -> None:
    out = sdk(live, sdks, kwargs={"model": "google/imagen4/preview", "prompt": "x" * 401})
    assert (out["status"], out["param"], out["code"]) == (400, "prompt", "invalid_value")


def test_unknown_model_and_unknown_field(live: Server, sdks: dict[str, Path]) -> None:
    out = sdk(live, sdks, kwargs={"model": "dall-e-3", "prompt": "x"})
    assert (out["status"], out["type"], out["code"]) == (404, "NotFoundError", "model_not_found")
    raw = httpx.post(f"{live.url}{URL}", headers=AUTH, json={"prompt": "x", "colour": "red"})
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "colour"
    assert raw.json()["statusCode"] == 400
    bad_json = httpx.post(f"{live.url}{URL}", headers=AUTH, content=b"{nope")
    assert bad_json.status_code == 400 and bad_json.json()["error"]["param"] == "body"


def test_aimls_own_reply_fields_beside_openais(live: Server, sdks: dict[str, Path]) -> None:
    """AIML's quick example reads images[].url, content_type, file_name, file_size and a
    top-level seed; the openai SDK keeps them beside data[] and meta."""
    out = sdk(live, sdks, kwargs={"model": "google/imagen-4.0-generate-001", "prompt": "a heron"},
              extra_body={"num_images": 2, "seed": 21})
    assert out["ok"], out
    reply = out["response"]
    assert reply["seed"] == 21 and len(reply["images"]) == 2
    for item, image in zip(reply["data"], reply["images"], strict=True):
        assert image["url"] == item["url"] and image["content_type"] == "image/png"
        fetched = httpx.get(image["url"], timeout=30).content
        assert image["file_size"] == len(fetched) and image["file_name"].endswith(".png")
    assert "credits_used" in reply["meta"]["usage"]


def test_models_endpoints_and_what_easel_does_not_offer(
    live: Server, sdks: dict[str, Path]
) -> None:
    listed = sdk(live, sdks, call="models")
    assert listed["ok"] and "google/imagen-4.0-fast-generate-001" in listed["ids"]
    assert "imagen-4" in listed["ids"] and "google:2@3" in listed["ids"]
    got = sdk(live, sdks, call="retrieve", model="google/imagen-4.0-ultra-generate-001")
    assert got["ok"] and got["model"]["owned_by"] == "aiml"
    missing = sdk(live, sdks, call="retrieve", model="dall-e-3")
    assert (missing["status"], missing["type"], missing["code"]) == (
        404, "NotFoundError", "model_not_found")
    out = sdk(live, sdks, call="variation")
    assert (out["status"], out["type"]) == (404, "NotFoundError"), out
    assert "easel does not offer POST /v1/images/variations" in out["message"]
    chat = httpx.post(f"{live.url}/v1/chat/completions", headers=AUTH, json={})
    assert chat.status_code == 404 and chat.json()["error"]["type"] == "invalid_request_error"


def test_url_lifetime_follows_openais_documented_hour(make_server: Any) -> None:
    """OpenAI documents 60 minutes for image URLs: an operator's longer default for the other
    dialects leaves it so."""
    srv = make_server("ttl", EASEL_IMAGE_TTL_SECONDS=7200).start()
    reply = httpx.post(f"{srv.url}{URL}", timeout=120, json={"prompt": "a heron"})
    assert reply.status_code == 200, reply.text
    job = httpx.get(f"{srv.url}/easel/jobs/{reply.headers['x-easel-job-id']}").json()
    created = datetime.fromisoformat(job["created_at"])
    (expires,) = [datetime.fromisoformat(e) for e in job["expires_at"]]
    assert 3500 < (expires - created).total_seconds() < 3700
    other = httpx.post(f"{srv.url}/api/v3/google/imagen4-fast", timeout=120,
                       json={"prompt": "a heron", "enable_sync_mode": True}).json()["data"]
    job = httpx.get(f"{srv.url}/easel/jobs/{other['id']}").json()
    (expires,) = [datetime.fromisoformat(e) for e in job["expires_at"]]
    assert 7100 < (expires - datetime.fromisoformat(job["created_at"])).total_seconds() < 7300


RETRIED = {"model": "imagen-4.0-fast-generate-001", "prompt": "a pear", "size": "64x64",
           "response_format": "url"}


def test_the_sdks_retries_never_make_a_second_job(
    make_server: Any, sdks: dict[str, Path]
) -> None:
    """openai retries 5xx and its own timeouts (twice by default) with no idempotency key. A
    held request that times out answers 504 with x-should-retry: false (one job, not three);
    an SDK that gives up first and sends the request again (x-stainless-retry-count) is
    matched to the job its first attempt made."""
    srv = make_server("slow", step_seconds=0.5, EASEL_API_KEYS=KEY,
                      EASEL_SYNC_TIMEOUT="0.5").start()
    for sdk in ("openai", "openai-1"):
        out = run_client(sdks[sdk], "openai_client.py", {
            "url": srv.url, "key": KEY, "max_retries": 2, "kwargs": RETRIED})
        assert (out["ok"], out["status"], out["code"]) == (False, 504, "timeout"), out
        assert "/easel/jobs/" in out["message"]
    assert srv.db("SELECT COUNT(*) FROM jobs") == [(2,)]  # one per SDK, none from a retry

    patient = make_server("patient", step_seconds=0.5, EASEL_API_KEYS=KEY).start()
    prompt = {**RETRIED, "prompt": "a plum"}
    out = run_client(sdks["openai"], "openai_client.py", {
        "url": patient.url, "key": KEY, "max_retries": 2, "timeout": 1.0, "kwargs": prompt})
    assert out["ok"] or out["type"] == "APITimeoutError", out
    assert patient.db("SELECT COUNT(*) FROM jobs") == [(1,)]  # three attempts, one job
    again = run_client(sdks["openai"], "openai_client.py", {
        "url": patient.url, "key": KEY, "kwargs": prompt})
    assert again["ok"] and patient.db("SELECT COUNT(*) FROM jobs") == [(2,)]  # a new request


def test_a_rate_limit_reads_as_openais_through_the_sdk(
    make_server: Any, sdks: dict[str, Path]
) -> None:
    srv = make_server("limited", EASEL_API_KEYS=KEY, EASEL_RATE_LIMIT_PER_SECOND="0.01",
                      EASEL_RATE_LIMIT_BURST="1").start()
    spec = {"url": srv.url, "key": KEY, "kwargs": RETRIED}
    assert run_client(sdks["openai"], "openai_client.py", spec)["ok"]
    limited = run_client(sdks["openai"], "openai_client.py", spec)
    assert (limited["status"], limited["type"]) == (429, "RateLimitError"), limited
    assert (limited["code"], limited["error_type"]) == ("rate_limit_exceeded", "requests")


def test_head_on_an_image_url_answers_like_get_without_the_body(live: Server) -> None:
    reply = httpx.post(f"{live.url}{URL}", headers=AUTH, timeout=120,
                       json={"prompt": "a heron", "output_format": "webp"})
    url = reply.json()["data"][0]["url"]
    got, head = httpx.get(url), httpx.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == got.headers["content-type"] == "image/webp"
    assert int(head.headers["content-length"]) == len(got.content) > 0
    assert httpx.head(url.replace(".webp", "x.webp")).status_code == 404
