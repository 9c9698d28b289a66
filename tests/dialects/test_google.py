"""Google `:predict` specifics beyond the shared contract (protocols.md §5)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from tests.dialects.conftest import KEY, run_client
from tests.dialects.test_contract import pixels
from tests.server_harness import Server

BODY = {"instances": [{"prompt": "a quiet harbour"}]}


def test_gemini_default_count_is_four(live: Server, sdks: dict[str, Path]) -> None:
    out = run_client(sdks["google-genai"], "google_client.py", {
        "url": live.url, "key": KEY, "model": "imagen-4.0-fast-generate-001",
        "prompt": "a quiet harbour"})
    assert out["ok"], out
    assert len(out["images"]) == 4 and {i["mime"] for i in out["images"]} == {"image/png"}


def test_vertex_path_with_bearer_defaults_to_one(live: Server) -> None:
    url = (f"{live.url}/v1/projects/p/locations/us-central1/publishers/google/models/"
           "imagen-4.0-fast-generate-001:predict")
    reply = httpx.post(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120, json={
        **BODY, "parameters": {"addWatermark": True, "personGeneration": "allow_all"}})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["predictions"]) == 1
    # Both are honoured now (docs/safety.md); a language other than auto/en is the one
    # field left that easel accepts and cannot act on.
    assert "x-easel-ignored-fields" not in reply.headers
    # enhancePrompt defaults to on; this server has no chat endpoint, and the reply says so.
    assert reply.headers["x-easel-prompt-enhancement"] == "not_configured"


def test_errors_are_google_rpc_errors(live: Server, sdks: dict[str, Path]) -> None:
    out = run_client(sdks["google-genai"], "google_client.py", {
        "url": live.url, "key": KEY, "model": "imagen-9", "prompt": "x"})
    assert (out["code"], out["status"]) == (404, "NOT_FOUND")
    url = f"{live.url}/v1beta/models/imagen-4.0-fast-generate-001:predict"
    reply = httpx.post(url, params={"key": KEY}, json={**BODY, "parameters": {"seed": -1}})
    error = reply.json()["error"]
    assert reply.status_code == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["fieldViolations"][0]["field"] == "parameters.seed"
    other = httpx.post(f"{live.url}/v1beta/models/imagen-4.0-fast-generate-001:embed",
                       params={"key": KEY}, json=BODY)
    assert other.status_code == 404 and other.json()["error"]["status"] == "NOT_FOUND"


def _pixels(out: dict[str, object]) -> list[bytes]:
    images = out["images"]
    assert isinstance(images, list)
    return [pixels(base64.b64decode(i["b64"])) for i in images]


def _vertex(live: Server, sdks: dict[str, Path], **spec: object) -> dict[str, object]:
    result: dict[str, object] = run_client(sdks["google-genai-3"], "google_client.py", {
        "url": live.url, "key": KEY, "mode": "vertex", "prompt": "a quiet harbour", **spec})
    return result


def test_newest_sdk_in_vertex_mode_on_v1beta1_and_v1(live: Server, sdks: dict[str, Path]) -> None:
    """google-genai 3.x posts to /v1beta1/projects/.../publishers/google/models/{m}:predict;
    with api_version v1, to /v1/...; express mode (an API key, no project) drops the project."""
    beta = _vertex(live, sdks, model="imagen-4.0-generate-001",
                   config={"number_of_images": 2, "seed": 11, "add_watermark": False})
    v1 = _vertex(live, sdks, model="imagen-4.0-generate-001", http_options={"api_version": "v1"},
                 config={"number_of_images": 2, "seed": 11, "add_watermark": False})
    assert beta["ok"] and v1["ok"], (beta, v1)
    assert _pixels(beta) == _pixels(v1) and len(_pixels(beta)) == 2
    express = httpx.post(f"{live.url}/v1beta1/publishers/google/models/"
                         "imagen-4.0-fast-generate-001:predict", headers={"x-goog-api-key": KEY},
                         json=BODY, timeout=120)
    assert express.status_code == 200 and len(express.json()["predictions"]) == 1
    marked = _vertex(live, sdks, model="imagen-4.0-generate-001", config={"seed": 11})
    assert (marked["ok"], marked["code"], marked["status"]) == (False, 400, "INVALID_ARGUMENT")
    assert "Seed is not supported when watermark is enabled" in str(marked["message"])
    (violation,) = marked["details"][0]["fieldViolations"]  # type: ignore[index]
    assert violation["field"] == "parameters.seed"  # named like every other parameter


def test_model_listings_through_both_sdks(live: Server, sdks: dict[str, Path]) -> None:
    gemini = run_client(sdks["google-genai"], "google_client.py",
                        {"url": live.url, "key": KEY, "call": "list"})
    newest = run_client(sdks["google-genai-3"], "google_client.py",
                        {"url": live.url, "key": KEY, "call": "list"})  # v1 in 3.x
    vertex = _vertex(live, sdks, call="list")
    assert "models/imagen-4.0-generate-001" in gemini["models"]
    assert newest["models"] == gemini["models"]
    assert "publishers/google/models/imagen-4.0-ultra-generate-001" in vertex["models"]  # type: ignore[operator]
    got = _vertex(live, sdks, call="get", model="imagen-4.0-fast-generate-001")
    assert got["ok"] and got["display_name"] == "Imagen 4 Fast"
    missing = run_client(sdks["google-genai"], "google_client.py",
                         {"url": live.url, "key": KEY, "call": "get", "model": "imagen-9"})
    assert (missing["code"], missing["status"]) == (404, "NOT_FOUND")


def test_a_bad_key_is_api_key_invalid_and_a_bad_token_unauthenticated(
    live: Server, sdks: dict[str, Path]
) -> None:
    url = f"{live.url}/v1beta/models/imagen-4.0-fast-generate-001:predict"
    reply = httpx.post(url, headers={"x-goog-api-key": "wrong"}, json=BODY)
    error = reply.json()["error"]
    assert (reply.status_code, error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    keyless = httpx.post(url, json=BODY).json()["error"]
    assert (keyless["code"], keyless["status"]) == (403, "PERMISSION_DENIED")
    assert "unregistered callers" in keyless["message"]
    token = _vertex(live, sdks, key="wrong", model="imagen-4.0-fast-generate-001")
    assert (token["code"], token["status"]) == (401, "UNAUTHENTICATED")
    bare = httpx.post(f"{live.url}/v1beta1/projects/p/locations/l/publishers/google/models/"
                      "imagen-4.0-fast-generate-001:predict", json=BODY)
    assert (bare.status_code, bare.json()["error"]["status"]) == (401, "UNAUTHENTICATED")
    got = httpx.get(url, params={"key": KEY})  # :predict with the wrong method
    assert got.status_code == 405 and "takes POST" in got.json()["error"]["message"]


def test_guidance_scale_within_the_backends_bounds(live: Server, sdks: dict[str, Path]) -> None:
    """guidance_scale (REST guidanceScale) changes the image on a backend that uses guidance,
    is refused past its bound, and is refused on a guidance-distilled one, naming the field."""
    def run(model: str, **config: object) -> dict[str, object]:
        return _vertex(live, sdks, model=model,
                       config={"seed": 3, "add_watermark": False, **config})

    # Ultra runs Qwen-Image, whose true CFG the stand-in really applies.
    plain = run("imagen-4.0-ultra-generate-001")
    guided = run("imagen-4.0-ultra-generate-001", guidance_scale=9.5)
    assert plain["ok"] and guided["ok"] and _pixels(plain) != _pixels(guided)
    over = run("imagen-4.0-ultra-generate-001", guidance_scale=50.0)
    assert over["code"] == 400 and "parameters.guidanceScale must be 1..20" in str(over["message"])
    distilled = run("imagen-4.0-fast-generate-001", guidance_scale=2.0)
    assert distilled["code"] == 400 and "guidance-distilled" in str(distilled["message"])


def test_the_first_published_preview_ids_are_served(live: Server, sdks: dict[str, Path]) -> None:
    for model in ("imagen-4.0-generate-preview-06-06", "imagen-4.0-ultra-generate-preview-06-06"):
        out = run_client(sdks["google-genai"], "google_client.py", {
            "url": live.url, "key": KEY, "model": model, "prompt": "a quiet harbour",
            "config": {"number_of_images": 1}})
        assert out["ok"] and len(out["images"]) == 1, out
    preview = "google/imagen-4.0-ultra-generate-preview-06-06"  # AIML's id for it
    aiml = run_client(sdks["openai"], "openai_client.py", {
        "url": live.url, "key": KEY, "kwargs": {"model": preview, "prompt": "a heron"}})
    assert aiml["ok"] and aiml["response"]["model"] == preview


def test_paths_easel_does_not_serve_answer_as_google_rpc_errors(live: Server) -> None:
    for method, path in (("GET", "/v1beta/cachedContents"), ("POST", "/v1beta1/projects/p/"
                                                              "locations/l/endpoints/e:predict")):
        reply = httpx.request(method, f"{live.url}{path}", headers={"x-goog-api-key": KEY})
        error = reply.json()["error"]
        assert reply.status_code == 404 and error["status"] == "NOT_FOUND"
        assert error["message"] == f"easel does not offer {method} {path}"
    runware = httpx.get(f"{live.url}/v1")  # Runware's path: its own error shape
    assert runware.status_code == 405 and runware.json()["errors"][0]["code"] == "methodNotAllowed"
