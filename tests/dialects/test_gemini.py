"""The Gemini image API (`generateContent`), text to image, through google-genai's
generate_content and generate_content_stream: the newest release and the oldest common one, in
Gemini API mode (an API key) and Vertex mode (an OAuth token, `global`), against a real server
(fake engine, the test catalog's small Gemini size tables). Editing: tests/dialects/
test_sdks_on_tiny.py."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dialects.conftest import KEY, run_client
from tests.server_harness import SMALL_SIZES, Server

MODES = [("google-genai", "gemini"), ("google-genai-3", "gemini"), ("google-genai-2", "vertex"),
         ("google-genai-3", "vertex")]


def gemini(sdks: dict[str, Path], live: Server, sdk: str, mode: str, **spec: Any) -> Any:
    return run_client(sdks[sdk], "gemini_client.py", {"url": live.url, "key": KEY,
                                                      "mode": mode, **spec})


@pytest.mark.parametrize(("sdk", "mode"), MODES)
def test_generate_content_draws_candidates_with_text_and_usage(
    live: Server, sdks: dict[str, Path], sdk: str, mode: str,
) -> None:
    out = gemini(sdks, live, sdk, mode, model="gemini-3.1-flash-image", prompt="a red fox",
                 config={"candidate_count": 2, "seed": 11,
                         "response_modalities": ["TEXT", "IMAGE"],
                         "image_config": {"aspect_ratio": "16:9"}})
    assert out["ok"], out
    assert len(out["candidates"]) == 2
    for candidate in out["candidates"]:
        text, image = candidate["parts"]
        assert "Here is the image" in text["text"] and not text["thought"]
        assert (image["mime"], image["size"]) == ("image/png", [64, 32])
        assert candidate["finish_reason"] == "STOP"
    assert out["model_version"] == "gemini-3.1-flash-image"
    # Vertex AI says when a reply was made (response.create_time); the Gemini API does not.
    assert (out["created"] is not None) == (mode == "vertex"), out["created"]
    assert out["text"].startswith("Here is the image")
    usage = out["usage"]
    assert usage["candidates_token_count"] >= 2 * 1120
    assert usage["total_token_count"] == usage["prompt_token_count"] + \
        usage["candidates_token_count"]
    assert {d["modality"] for d in usage["candidates_tokens_details"]} == {"IMAGE", "TEXT"}


def test_every_aspect_ratio_of_the_model_is_its_size(
    live: Server, sdks: dict[str, Path],
) -> None:
    sizes = tomllib.loads(SMALL_SIZES)["size_tables"]["gemini-wide"]
    assert len(sizes) == 14
    for ratio, size in sizes.items():
        reply = httpx.post(f"{live.url}/v1beta/models/gemini-3.1-flash-image:generateContent",
                           headers={"x-goog-api-key": KEY}, timeout=60, json={
                               "contents": [{"parts": [{"text": "a fox"}]}],
                               "generationConfig": {"responseModalities": ["IMAGE"],
                                                    "imageConfig": {"aspectRatio": ratio}}})
        assert reply.status_code == 200, (ratio, reply.text)
        (candidate,) = reply.json()["candidates"]
        (part,) = candidate["content"]["parts"]
        data = base64.b64decode(part["inlineData"]["data"])
        assert [int.from_bytes(data[16:20], "big"),
                int.from_bytes(data[20:24], "big")] == size, ratio


@pytest.mark.parametrize(("sdk", "mode"), [("google-genai", "gemini"), ("google-genai-3",
                                                                         "vertex")])
def test_the_stream_sends_progress_thoughts_then_the_text_then_the_image(
    live: Server, sdks: dict[str, Path], sdk: str, mode: str,
) -> None:
    out = gemini(sdks, live, sdk, mode, call="stream", model="gemini-2.5-flash-image",
                 prompt="a blue house", config={"thinking_config": {"include_thoughts": True}})
    assert out["ok"], out
    chunks = out["chunks"]
    *notes, text, last = chunks
    assert all(part["thought"] for chunk in notes for c in chunk["candidates"]
               for part in c["parts"])
    (said,) = text["candidates"][0]["parts"]
    assert said["text"].startswith("Here is") and not said["thought"]
    (image,) = last["candidates"][0]["parts"]
    assert image["mime"] == "image/png" and last["candidates"][0]["finish_reason"] == "STOP"
    assert last["usage"]["candidates_token_count"] >= 1290


def test_a_stream_without_alt_sse_is_one_json_array(live: Server) -> None:
    """Google answers :streamGenerateContent without `?alt=sse` (Vertex's curl examples) with
    the chunks as one JSON array, not as SSE events."""
    url = (f"{live.url}/v1/projects/p/locations/global/publishers/google/models/"
           "gemini-2.5-flash-image:streamGenerateContent")
    reply = httpx.post(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60, json={
        "contents": [{"role": "user", "parts": [{"text": "a blue house"}]}]})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    *texts, last = reply.json()
    assert [c["candidates"][0]["content"]["parts"][0]["text"][:7] for c in texts] == ["Here is"]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert "inlineData" in last["candidates"][0]["content"]["parts"][0]


@pytest.mark.parametrize(("config", "words"), [
    ({"response_modalities": ["TEXT"]}, "responseModalities must include IMAGE"),
    ({"image_config": {"image_size": "4K"}},
     "imageSize '4K' is not served for gemini-3-pro-image here; it draws 1K, 2K"),
    ({"image_config": {"aspect_ratio": "7:3"}}, "aspectRatio"),
    ({"candidate_count": 9}, "candidateCount"),
])
def test_bad_configs_are_google_errors_naming_the_field(
    live: Server, sdks: dict[str, Path], config: dict[str, Any], words: str,
) -> None:
    out = gemini(sdks, live, "google-genai-3", "vertex", model="gemini-3-pro-image",
                 prompt="a fox", config=config)
    assert not out["ok"] and (out["code"], out["status"]) == (400, "INVALID_ARGUMENT"), out
    assert words in out["message"]


def test_an_unknown_model_is_404(live: Server, sdks: dict[str, Path]) -> None:
    unknown = gemini(sdks, live, "google-genai", "gemini", model="gemini-9-image",
                     prompt="a fox")
    assert (unknown["code"], unknown["status"]) == (404, "NOT_FOUND"), unknown
    imagen = gemini(sdks, live, "google-genai", "gemini", model="imagen-4.0-generate-001",
                    prompt="a fox")
    assert imagen["code"] == 404, imagen  # an Imagen id answers :predict, not generateContent


def test_raw_rest_takes_snake_case_and_refuses_unknown_fields(live: Server) -> None:
    url = (f"{live.url}/v1beta1/projects/p/locations/global/publishers/google/models/"
           "gemini-3-pro-image:generateContent")
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"contents": [{"role": "user", "parts": [{"text": "a fox"}]}],
            "generation_config": {"response_modalities": ["IMAGE"],
                                  "image_config": {"aspect_ratio": "4:5",
                                                   "image_output_options": {
                                                       "mime_type": "image/jpeg"}}}}
    reply = httpx.post(url, headers=auth, json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    part = reply.json()["candidates"][0]["content"]["parts"][0]
    assert part["inlineData"]["mimeType"] == "image/jpeg"
    tools = httpx.post(url, headers=auth, json={**body, "tools": [{"googleSearch": {}}]},
                       timeout=60)
    assert tools.status_code == 400
    assert tools.json()["error"]["details"][0]["fieldViolations"][0]["field"] == "tools"
    ignored = httpx.post(url, headers=auth, timeout=60, json={
        **body, "generation_config": {**body["generation_config"], "temperature": 0.2}})
    assert ignored.headers["x-easel-ignored-fields"] == "generationConfig.temperature"


def test_raw_rest_on_v1_with_a_bearer_or_no_credential_is_googles(live: Server) -> None:
    """/v1/models is OpenAI's path too: a call to a Gemini method is Google's by its method
    alone, as :predict is, when it carries no Google key or client header."""
    url = f"{live.url}/v1/models/gemini-2.5-flash-image:generateContent"
    body = {"contents": [{"parts": [{"text": "a fox"}]}],
            "generationConfig": {"responseModalities": ["IMAGE"]}}
    bearer = httpx.post(url, headers={"Authorization": f"Bearer {KEY}"}, json=body, timeout=60)
    assert bearer.status_code == 200, bearer.text
    assert bearer.json()["candidates"][0]["finishReason"] == "STOP"
    keyless = httpx.post(url, json=body, timeout=60)
    assert keyless.status_code == 403, keyless.text
    assert keyless.json()["error"]["status"] == "PERMISSION_DENIED"
    stream = httpx.post(url.replace(":generateContent", ":streamGenerateContent?alt=sse"),
                        json=body, timeout=60)
    assert (stream.status_code, stream.json()["error"]["code"]) == (403, 403), stream.text


def test_the_model_listing_has_the_gemini_image_models(live: Server) -> None:
    listed = httpx.get(f"{live.url}/v1beta/models", headers={"x-goog-api-key": KEY}).json()
    names = {m["name"]: m for m in listed["models"]}
    assert "generateContent" in names["models/gemini-3.1-flash-image"][
        "supportedGenerationMethods"]
    one = httpx.get(f"{live.url}/v1beta/models/gemini-3-pro-image",
                    headers={"x-goog-api-key": KEY}).json()
    assert one["name"] == "models/gemini-3-pro-image" and "Ultra" in one["description"]
