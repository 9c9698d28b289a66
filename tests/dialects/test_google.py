"""Google `:predict` specifics beyond the shared contract (protocols.md §5)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.dialects.conftest import KEY, run_client
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
    assert reply.headers["x-easel-ignored-fields"] == "addWatermark, personGeneration"


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
