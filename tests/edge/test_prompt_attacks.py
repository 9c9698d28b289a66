"""Attacks on the prompt rules through the app (issue #30, items 4 and 5): spellings of a
blocked word that the text encoders read as the word, control characters, and a rewrite from
the chat endpoint (tests/prompts/chat.py, on loopback) that spells a blocked word in
look-alike letters. The rules themselves are tested on text in tests/prompts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.edge.conftest import KEY, Edge
from tests.prompts.chat import Behaviour, ChatEndpoint, serving
from tests.server_harness import inference

AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
CYRILLIC_GORE = "a g\u043er\u0435 scene"  # Cyrillic о and е


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatEndpoint]:
    with serving() as endpoint:
        yield endpoint


def submit(edge: Edge, prompt: str, **fields: Any) -> Any:
    return edge.client.post("/easel/jobs", headers=AUTH, json={
        "model": "google/imagen4-fast", "prompt": prompt, **fields})


@pytest.mark.parametrize("prompt", [
    CYRILLIC_GORE, "a gore_fest", "gore1", "a go\u034fre scene", "a gor\ufe0fe scene",
    "a go\u3164re scene",
])
def test_a_blocked_word_in_any_spelling_is_refused_before_a_job(
        make_edge: Callable[..., Edge], prompt: str) -> None:
    edge = make_edge(blocked_prompt_terms=["gore"])
    reply = submit(edge, prompt)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["parameter"]) == ("content_blocked", "prompt")
    assert edge.db("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_control_characters_are_refused_naming_the_prompt_in_every_dialect(edge: Edge) -> None:
    # The encoders disagree on them: T5 reads a form feed as a space, CLIP drops it.
    for control in ("\x7f", "\x08", "\x0c", "\x1f", "\x85"):
        prompt = json.dumps(f"a gr{control}een square")
        task = json.dumps({**inference(), "positivePrompt": "PLACEHOLDER"}).replace(
            '"PLACEHOLDER"', prompt)
        calls = [
            ("/v1", f"[{task}]", "positivePrompt"),
            ("/v1/images/generations",
             '{"model": "imagen-4.0-fast-generate-001", "prompt": ' + prompt + "}", "prompt"),
            ("/v1beta/models/imagen-4.0-fast-generate-001:predict",
             '{"instances": [{"prompt": ' + prompt + "}]}", "instances[0].prompt"),
            ("/easel/jobs", '{"model": "google/imagen4-fast", "prompt": ' + prompt + "}",
             "prompt"),
        ]
        for path, body, parameter in calls:
            reply = edge.client.post(path, content=body.encode(), headers=AUTH)
            assert reply.status_code == 400, (path, reply.text)
            assert parameter in reply.text and "control character" in reply.text
    negative = submit(edge, "a square", model="imagen-4.0-generate-001",
                      negative_prompt="bl\x00ur")
    assert negative.status_code == 400
    assert negative.json()["error"]["parameter"] == "negative_prompt"
    assert edge.db("SELECT COUNT(*) FROM jobs") == [(0,)]
    # Tab, newline and carriage return are text.
    assert submit(edge, "a green\tsquare,\r\non grey").status_code == 202


def test_a_rewrite_in_look_alike_letters_falls_back_to_the_original(
        make_edge: Callable[..., Edge], chat: ChatEndpoint) -> None:
    chat.behaviour = Behaviour(content=CYRILLIC_GORE)
    edge = make_edge(blocked_prompt_terms=["gore"], prompt_enhancer_url=chat.url,
                     prompt_enhancer_model="tiny-llm")
    reply = submit(edge, "a quiet scene", enhance_prompt=True)
    assert reply.status_code == 202, reply.text
    assert reply.json()["prompt_enhancement"] == {
        "state": "fallback", "prompt": "a quiet scene",
        "detail": "the rewrite was blocked by this server's content policy"}
    assert chat.requests[-1]["body"]["messages"][-1]["content"] == "a quiet scene"


def test_an_answer_of_a_mib_of_reasoning_tags_falls_back_at_the_length_cap(
        make_edge: Callable[..., Edge], chat: ChatEndpoint) -> None:
    chat.behaviour = Behaviour(content="<think>" * ((1 << 20) // 8))
    edge = make_edge(prompt_enhancer_url=chat.url, prompt_enhancer_model="tiny-llm")
    reply = submit(edge, "a quiet scene", enhance_prompt=True)
    assert reply.status_code == 202, reply.text
    enhancement = reply.json()["prompt_enhancement"]
    assert (enhancement["state"], enhancement["prompt"]) == ("fallback", "a quiet scene")
    assert "characters" in enhancement["detail"]
