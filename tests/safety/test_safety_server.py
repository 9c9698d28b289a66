"""Every safety, provenance and prompt field through each dialect's official SDK, against one
real server (tests/serve.py --engine pictures: the real server, whose engine paints the picture a
prompt names, so the real detector sees real pictures). The server has a block list, a chat
endpoint for prompt rewrites (on loopback, started here) and a C2PA test certificate.

The WaveSpeed SDK returns only `outputs`, so its `has_nsfw_contents` is read over REST.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from easel.services.images.provenance import make_test_certificate, read_credentials, read_watermark
from tests import sse
from tests.dialects.conftest import run_client
from tests.safety.chat import ChatServer
from tests.sdk_venvs import sdk_python
from tests.server_harness import Server

KEY = "safety-key"
SIZES = """
[sizes]
"1:1"  = [256, 256]
"3:4"  = [192, 256]
"4:3"  = [256, 192]
"9:16" = [144, 256]
"16:9" = [256, 144]

[size_tables.gemini]
"1:1"  = [256, 256]
"""
TORSO, CAT, ASTRONAUT = "[picture:torso] a figure", "[picture:chelsea] a cat", \
    "[picture:astronaut] a portrait"
RUNWARE_CLIENT = Path(__file__).parents[1] / "runware" / "clients" / "sdk.py"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, chat: ChatServer) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("safety")
    chain, key = make_test_certificate(root / "cert")
    catalog = root / "catalog.toml"
    catalog.write_text(SIZES)
    server = Server(root / "data", small=False, engine="pictures",
                    EASEL_API_KEYS=KEY, EASEL_CATALOG_FILE=catalog,
                    EASEL_BLOCKED_PROMPT_TERMS="forbidden fruit",
                    EASEL_BLOCKED_PROMPT_PATTERNS=json.dumps([r"\bsecret\s+plans?\b"]),
                    EASEL_PROMPT_ENHANCER_URL=chat.url, EASEL_PROMPT_ENHANCER_MODEL="tiny-llm",
                    EASEL_C2PA_CERTIFICATE=chain, EASEL_C2PA_PRIVATE_KEY=key,
                    EASEL_STAND_IN="tiny")  # each tier's own family: Standard's true CFG
    server.start()
    yield server
    server.stop()


def sizes() -> list[tuple[int, int]]:
    """The server's sizes (SIZES), where the watermark reader looks for the mark."""
    return [(w, h) for w, h in tomllib.loads(SIZES)["sizes"].values()]


def runware(srv: Server, **task: Any) -> dict[str, Any]:
    args = {"transport": "rest", "url": srv.url + "/v1", "apiKey": KEY,
            "task": {"width": 256, "height": 256, "deliveryMethod": "sync", **task}}
    return dict(run_client(sdk_python("runware-sdk"), str(RUNWARE_CLIENT), args))


def openai(srv: Server, prompt: str, **extra: Any) -> dict[str, Any]:
    spec = {"url": srv.url, "key": KEY, "kwargs": {
        "model": "imagen-4.0-generate-001", "prompt": prompt, "response_format": "b64_json"},
        "extra_body": extra}
    return dict(run_client(sdk_python("openai"), "openai_client.py", spec))


def google(srv: Server, prompt: str, **config: Any) -> dict[str, Any]:
    spec = {"url": srv.url, "key": KEY, "mode": "vertex", "model": "imagen-4.0-generate-001",
            "prompt": prompt, "config": {"number_of_images": 1, **config}}
    return dict(run_client(sdk_python("google-genai-3"), "google_client.py", spec))


def test_runware_flags_and_delivers(srv: Server) -> None:
    checked = runware(srv, positivePrompt=TORSO, safety={"checkContent": True, "mode": "full"})
    assert [i["NSFWContent"] for i in checked["images"]] == [True]
    assert httpx.get(checked["images"][0]["imageURL"]).status_code == 200  # flagged, delivered
    assert runware(srv, positivePrompt=CAT, checkNSFW=True)["images"][0]["NSFWContent"] is False
    unchecked = runware(srv, positivePrompt=TORSO,  # no safety asked: nothing checked
                        providerSettings={"google": {"enhancePrompt": True}})
    image = unchecked["images"][0]
    assert image["NSFWContent"] is False
    job = httpx.get(f"{srv.url}/easel/jobs/{image['taskUUID']}",
                    headers={"authorization": f"Bearer {KEY}"}).json()
    assert job["prompt_enhancement"]["state"] == "rewritten"  # Runware has no field to show it


def test_runware_blocked_prompt(srv: Server) -> None:
    error = runware(srv, positivePrompt="a Forbidden  Fruit on a table")["error"]
    # runware-sdk files contentPolicyViolation under its "safety" errors.
    assert (error["code"], error["parameter"]) == ("safety", "positivePrompt")
    assert "content policy" in error["message"]


def test_wavespeed_flags_has_nsfw_and_refuses_blocked_prompts(srv: Server) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    model = f"{srv.url}/api/v3/google/imagen4"
    reply = httpx.post(model, headers=headers, timeout=60,
                       json={"prompt": TORSO, "enable_sync_mode": True}).json()["data"]
    assert reply["status"] == "completed" and reply["has_nsfw_contents"] == [True]
    off = httpx.post(model, headers=headers, timeout=60, json={
        "prompt": TORSO, "enable_sync_mode": True, "enable_safety_checker": False}).json()
    assert off["data"]["has_nsfw_contents"] == [False]
    sdk = run_client(sdk_python("wavespeed"), "wavespeed_client.py",
                     {"url": srv.url, "key": KEY, "model": "google/imagen4",
                      "input": {"prompt": TORSO}})
    assert sdk["ok"] and len(sdk["outputs"]) == 1  # WaveSpeed flags; it does not withhold
    blocked = run_client(sdk_python("wavespeed"), "wavespeed_client.py",
                         {"url": srv.url, "key": KEY, "model": "google/imagen4",
                          "input": {"prompt": "the secret plans"}})
    assert not blocked["ok"] and "content policy" in blocked["error"]
    refused = httpx.post(model, headers=headers, json={"prompt": "the secret plans"}).json()
    assert (refused["data"]["status"], refused["data"]["code"]) == ("failed", 1200)


def test_openai_withholds_flagged_images_and_people(srv: Server) -> None:
    nsfw = openai(srv, TORSO)
    assert (nsfw["ok"], nsfw["status"], nsfw["code"]) == (False, 400, "content_policy_violation")
    people = openai(srv, ASTRONAUT, person_generation="dont_allow")
    assert (people["status"], people["code"]) == (400, "content_policy_violation")
    assert "people" in people["message"]
    allowed = openai(srv, ASTRONAUT, person_generation="allow_adult", enhance_prompt=False)
    assert allowed["ok"] and len(allowed["response"]["data"]) == 1
    loose = openai(srv, TORSO, safety_setting="block_none", enhance_prompt=False)
    assert loose["ok"]  # the client turned the filter off
    blocked = openai(srv, "forbidden fruit")
    assert (blocked["status"], blocked["code"], blocked["param"]) == (
        400, "content_policy_violation", "prompt")


def test_openai_rewrites_watermarks_and_signs(srv: Server, chat: ChatServer) -> None:
    chat.behaviour = "rewrite"
    out = openai(srv, CAT, add_watermark=True, output_format="png")
    assert out["ok"], out
    item = out["response"]["data"][0]
    assert item["revised_prompt"] == f"A detailed photograph of {CAT}, golden hour light"
    data = base64.b64decode(item["b64_json"])
    assert read_watermark(Image.open(io.BytesIO(data)).convert("RGB"), sizes()).found
    store = read_credentials(data, "image/png")
    assert store is not None and store["validation_state"] == "Valid"
    generation = next(a["data"] for a in store["manifests"][store["active_manifest"]]
                      ["assertions"] if a["label"] == "org.easel.generation")
    assert (generation["model"], generation["tier"]) == ("imagen-4.0-generate-001", "standard")
    plain_reply = openai(srv, CAT, enhance_prompt=False)["response"]
    plain = plain_reply["data"][0]
    # A negative prompt on Standard (Z-Image-Turbo, distilled) runs true CFG: twice the price.
    negative = openai(srv, CAT, enhance_prompt=False, negative_prompt="blurry")["response"]
    assert negative["meta"]["usage"]["credits_used"] == 2 * plain_reply["meta"]["usage"][
        "credits_used"]
    fast = run_client(sdk_python("openai"), "openai_client.py", {
        "url": srv.url, "key": KEY, "kwargs": {"model": "imagen-4.0-fast-generate-001",
                                               "prompt": CAT},
        "extra_body": {"negative_prompt": "blurry"}})
    assert (fast["status"], fast["param"]) == (400, "negative_prompt")
    assert "revised_prompt" not in plain or plain["revised_prompt"] is None
    assert not read_watermark(Image.open(io.BytesIO(base64.b64decode(plain["b64_json"])))
                              .convert("RGB"), sizes()).found  # AIML: no watermark by default


def test_google_filters_with_reasons_rewrites_and_watermarks(srv: Server) -> None:
    filtered = google(srv, TORSO, include_rai_reason=True, safety_filter_level="BLOCK_ONLY_HIGH")
    assert filtered["ok"] and filtered["images"][0]["b64"] is None
    assert "safety setting" in filtered["images"][0]["rai_filtered_reason"]
    assert google(srv, TORSO, enhance_prompt=False)["images"] == []  # filtered out quietly
    people = google(srv, ASTRONAUT, include_rai_reason=True, person_generation="DONT_ALLOW",
                    enhance_prompt=False)
    assert "person" in people["images"][0]["rai_filtered_reason"]
    shown = google(srv, CAT, include_safety_attributes=True)
    image = shown["images"][0]
    assert image["enhanced_prompt"].startswith("A detailed photograph of")
    assert image["safety"]["categories"] == ["Sexual", "Person"]
    picture = Image.open(io.BytesIO(base64.b64decode(image["b64"]))).convert("RGB")
    assert read_watermark(picture, sizes()).found  # addWatermark defaults to on
    seeded = google(srv, CAT, seed=5)
    assert (seeded["ok"], seeded["code"]) == (False, 400) and "watermark" in seeded["message"]
    assert google(srv, CAT, seed=5, add_watermark=False, enhance_prompt=False)["ok"]
    blocked = google(srv, "forbidden fruit")
    assert (blocked["code"], blocked["status"]) == (400, "INVALID_ARGUMENT")
    assert blocked["details"][0]["fieldViolations"][0]["field"] == "instances[0].prompt"


def test_easel_api_shows_scores_and_metrics_count(srv: Server) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    body = {"model": "imagen-4.0-generate-001", "prompt": TORSO, "num_images": 2,
            "safety_setting": "block_low_and_above", "on_flagged": "withhold"}
    job = httpx.post(f"{srv.url}/easel/jobs", headers=headers, json=body, timeout=60).json()
    with httpx.stream("GET", f"{srv.url}/easel/jobs/{job['id']}/events", headers=headers,
                      timeout=120) as stream:
        done = next(data for name, data in sse.parse(stream.iter_lines()) if name == "end")
    assert done["status"] == "completed"
    assert [o["withheld"] for o in done["outputs"]] == ["nsfw", "nsfw"]
    assert all(o["url"] is None and o["scores"]["nsfw"] >= 0.7 for o in done["outputs"])
    # Its own blocked prompt and rewrite, so the counters below do not rest on other tests.
    refused = httpx.post(f"{srv.url}/v1/images/generations", headers=headers, timeout=60,
                         json={"model": "imagen-4.0-generate-001", "prompt": "forbidden fruit"})
    assert refused.status_code == 400
    rewrite = httpx.post(f"{srv.url}/easel/jobs", headers=headers, timeout=60,
                         json={"model": "imagen-4.0-generate-001", "prompt": CAT,
                               "enhance_prompt": True})
    assert rewrite.status_code < 300, rewrite.text
    metrics = httpx.get(f"{srv.url}/metrics", headers=headers).text
    assert 'easel_images_flagged_total{action="withheld",reason="nsfw"}' in metrics
    assert 'easel_prompts_blocked_total{dialect="openai"}' in metrics
    assert 'easel_prompt_enhancements_total{result="rewritten"}' in metrics


def test_safety_page_examples_run(srv: Server) -> None:
    """docs/safety.md's shell example, as printed, against this server."""
    text = (Path(__file__).parents[2] / "docs" / "safety.md").read_text()
    # Its shell blocks, but the setup one (what the reader exports: given here as `env`).
    blocks = [code for marker, code in re.findall(r"(<!-- example: setup -->\n)?```bash\n(.*?)```",
                                                   text, flags=re.S) if not marker]
    assert blocks
    env = {**os.environ, "EASEL_URL": srv.url, "EASEL_API_KEY": KEY,
           "EASEL_CATALOG_FILE": str(srv.env["EASEL_CATALOG_FILE"]),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for code in blocks:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], capture_output=True,
                              text=True, timeout=180, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "easel watermark found" in proc.stdout and "signed" in proc.stdout


def test_gemini_withholds_a_flagged_image_and_reports_a_blocked_prompt(srv: Server) -> None:
    """google-genai reads both through its own fields: a candidate's finish_reason
    IMAGE_SAFETY (no image), and the prompt feedback's block_reason."""
    from tests.dialects.conftest import run_client

    python = sdk_python("google-genai")
    spec = {"url": srv.url, "key": KEY, "mode": "gemini", "model": "gemini-2.5-flash-image",
            "config": {"response_modalities": ["IMAGE"], "safety_settings": [
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT",
                 "threshold": "BLOCK_LOW_AND_ABOVE"}]}}
    flagged = run_client(python, "gemini_client.py", {**spec, "prompt": TORSO})
    assert flagged["ok"], flagged
    (candidate,) = flagged["candidates"]
    assert candidate["finish_reason"] == "IMAGE_SAFETY" and candidate["parts"] == []
    cat = run_client(python, "gemini_client.py", {**spec, "prompt": CAT})
    assert cat["candidates"][0]["finish_reason"] == "STOP"
    assert cat["candidates"][0]["parts"][0]["size"] == [256, 256]
    blocked = run_client(python, "gemini_client.py", {**spec, "prompt": "a forbidden fruit"})
    assert blocked["ok"] and blocked["block_reason"] == "BLOCKLIST", blocked
    assert blocked["candidates"] == []
