"""The prompt block list on real text, and the prompt rewrite over real HTTP: an
OpenAI-compatible chat endpoint on loopback (FastAPI under uvicorn, in a thread) that each test
tells how to behave."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from easel.domain.safety import EnhancementState
from easel.services.jobs.prompts import (
    DEFAULT_SYSTEM_PROMPT,
    PromptBlockList,
    PromptEnhancer,
    not_configured,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-test-secret"


# -- the block list -----------------------------------------------------------------------------


TERMS = PromptBlockList(["gore", "red panda", "c++", "straße", "café", "кровь"])


@pytest.mark.parametrize(("text", "entry"), [
    ("some gore here", "gore"),
    ("GORE!", "gore"),
    ("blood and gore\n", "gore"),
    ("a gore-fest", "gore"),  # a hyphen ends a word
    ("Gorey details", None),  # part of a longer word
    ("gore_vidal", None),  # underscores are word characters
    ("a red   panda", "red panda"),  # any run of whitespace between a phrase's words
    ("a red\tpanda", "red panda"),
    ("a red\npanda", "red panda"),
    ("redpanda", None),
    ("red pandas", None),  # the whole phrase, not the start of a longer one
    ("ＧＯＲＥ in full width", "gore"),  # NFKC
    ("Ｒｅｄ\u3000Ｐａｎｄａ", "red panda"),  # full-width letters, ideographic space
    ("go\u200bre", "gore"),  # a zero-width space does not split a word
    ("gor\u00ade", "gore"),  # nor does a soft hyphen
    ("learn c++ today", "c++"),
    ("abc++", None),
    ("STRASSE", "straße"),  # casefold
    ("Straße", "straße"),
    ("CAFÉ", "café"),
    ("cafe\u0301 au lait", "café"),  # decomposed é: NFKC composes it
    ("Кровь на снегу", "кровь"),  # any script
    ("кровью", None),
    ("a quiet lake", None),
])
def test_terms_match_whole_words_and_phrases(text: str, entry: str | None) -> None:
    assert TERMS.match(text) == entry


def test_a_term_is_reported_as_written_and_matches_however_spaced() -> None:
    blocked = PromptBlockList(["  Red   Panda "])
    assert blocked.entries == ("Red   Panda",)
    assert blocked.match("one red panda") == "Red   Panda"


def test_patterns_are_searched_case_insensitively_after_folding() -> None:
    blocked = PromptBlockList(patterns=[r"\bkill\w*", r"sec(ret|ure) plans?"])
    assert blocked.match("Killing time") == r"re:\bkill\w*"
    assert blocked.match("ＫＩＬＬＥＲ whale") == r"re:\bkill\w*"
    assert blocked.match("the SECURE plan") == "re:sec(ret|ure) plans?"
    assert blocked.match("skill") is None
    assert blocked.match("a quiet lake") is None


def test_the_first_matching_entry_is_reported() -> None:
    blocked = PromptBlockList(["panda"], [r"red\s+panda"])
    assert blocked.match("a red panda") == "panda"


def test_a_bad_pattern_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'\(unclosed' is not a valid regular expression"):
        PromptBlockList([], ["(unclosed"])
    with pytest.raises(ValueError, match=r"'kill\|' matches the empty string"):
        PromptBlockList([], ["kill|"])  # a stray | would block every prompt


def test_the_file_has_comments_blank_lines_and_patterns(tmp_path: Path) -> None:
    listing = tmp_path / "blocked.txt"
    listing.write_text("\ufeff# the operator's list\n\n   \ngore\n  # indented comment\n"
                       "red  panda\nre:sec(ret|ure) plans?\nre:  \\bkill\\w*  \n",
                       encoding="utf-8")
    blocked = PromptBlockList.from_file(listing)
    assert blocked.entries == ("gore", "red  panda", "re:sec(ret|ure) plans?", r"re:\bkill\w*")
    assert blocked.match("an indented comment") is None
    assert blocked.match("killjoy") == r"re:\bkill\w*"


def test_a_bad_pattern_in_the_file_names_the_file_and_line(tmp_path: Path) -> None:
    listing = tmp_path / "blocked.txt"
    listing.write_text("gore\n# fine so far\nre:[a-\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"blocked\.txt, line 3: .*'\[a-'"):
        PromptBlockList.from_file(listing)
    listing.write_bytes(b"gore\n\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        PromptBlockList.from_file(listing)


def test_sources_combine_in_order_each_once(tmp_path: Path) -> None:
    listing = tmp_path / "blocked.txt"
    listing.write_text("gore\nre:x{3}\nlake\n", encoding="utf-8")
    blocked = PromptBlockList.from_sources(["gore", ""], ["x{3}"], listing)
    assert blocked.entries == ("gore", "re:x{3}", "lake")
    assert PromptBlockList.from_sources(["gore"], [], None).entries == ("gore",)
    both = PromptBlockList.combine(PromptBlockList(["a"]), PromptBlockList(["b", "a"]))
    assert both.entries == ("a", "b") and len(both) == 2


def test_an_empty_list_blocks_nothing() -> None:
    for empty in (PromptBlockList.empty(), PromptBlockList(["", "  "]), PromptBlockList()):
        assert not empty and empty.is_empty and len(empty) == 0
        assert empty.match("anything at all") is None
    assert TERMS and not TERMS.is_empty


# -- an OpenAI-compatible chat endpoint on loopback ---------------------------------------------


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0  # seconds before answering (it stops early when the client hangs up)
    content: str | None = None  # the assistant's message; None: a rewrite of the user's
    raw: str | None = None  # this body as is, instead of a chat completion


@dataclass
class ChatEndpoint:
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: uvicorn.Server | None = None

    def app(self) -> FastAPI:
        app = FastAPI()
        app.post("/v1/chat/completions")(self.complete)
        return app

    async def complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        how = self.behaviour
        await _wait_unless_gone(request, how.delay)
        if how.status != 200:
            return PlainTextResponse(f"overloaded (key {SECRET})", status_code=how.status)
        if how.raw is not None:
            return Response(how.raw, media_type="application/json")
        user = body["messages"][-1]["content"]
        text = how.content if how.content is not None else rewrite(user)
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": body["model"], "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"


def rewrite(prompt: str) -> str:
    return f"A detailed photograph of {prompt}, soft morning light"


async def _wait_unless_gone(request: Request, seconds: float) -> None:
    """A slow answer that ends when the client hangs up, so shutdown need not wait for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[ChatEndpoint]:
    chat = ChatEndpoint()
    chat.server = uvicorn.Server(uvicorn.Config(chat.app(), host="127.0.0.1", port=0,
                                                log_level="error", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=chat.server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not chat.server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert chat.server.started, "the chat endpoint did not start"
    yield chat
    chat.server.should_exit = True
    thread.join(10)


@pytest.fixture
def chat(endpoint: ChatEndpoint) -> ChatEndpoint:
    """The endpoint, answering normally and with no requests recorded."""
    endpoint.behaviour = Behaviour()
    endpoint.requests.clear()
    return endpoint


@pytest.fixture
async def enhancer(chat: ChatEndpoint) -> AsyncIterator[PromptEnhancer]:
    made = PromptEnhancer(chat.url, "tiny-llm", api_key=SECRET, timeout=5.0)
    yield made
    await made.aclose()


def closed_port_url() -> str:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


# -- the rewrite --------------------------------------------------------------------------------


async def test_the_rewrite_comes_from_the_chat_endpoint(
        chat: ChatEndpoint, enhancer: PromptEnhancer) -> None:
    result = await enhancer.enhance("a red fox")
    assert result.status is EnhancementState.REWRITTEN
    assert (result.prompt, result.detail) == (rewrite("a red fox"), None)
    [sent] = chat.requests
    assert sent["auth"] == f"Bearer {SECRET}"
    assert sent["body"] == {
        "model": "tiny-llm", "temperature": 0.7, "max_tokens": 300, "stream": False,
        "messages": [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                     {"role": "user", "content": "a red fox"}]}


async def test_no_key_no_authorization_and_a_custom_system_prompt(chat: ChatEndpoint) -> None:
    enhancer = PromptEnhancer(chat.url + "/", "m", system_prompt="Be brief.")  # trailing /
    try:
        assert (await enhancer.enhance("a cat")).status is EnhancementState.REWRITTEN
    finally:
        await enhancer.aclose()
    [sent] = chat.requests
    assert sent["auth"] is None
    assert sent["body"]["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_concurrent_rewrites_share_the_enhancer(enhancer: PromptEnhancer) -> None:
    prompts = [f"fox number {n}" for n in range(4)]
    results = await asyncio.gather(*(enhancer.enhance(p) for p in prompts))
    assert [r.prompt for r in results] == [rewrite(p) for p in prompts]


@pytest.mark.parametrize(("answer", "prompt"), [
    ("  A fox at dusk \n", "A fox at dusk"),
    ("<think>add fog?\nyes</think>\n\nA fox in fog", "A fox in fog"),
    ("<THINK>plan</THINK>Prompt: \"A fox, in watercolour\"", "A fox, in watercolour"),
    ("the opening tag was dropped</think>A fox at dusk", "A fox at dusk"),
    ("**Rewritten prompt:** A fox at dusk", "A fox at dusk"),
    ("Sure! Here is the enhanced prompt:\n\nA fox at dusk", "A fox at dusk"),
    ("“A fox at dusk”", "A fox at dusk"),
    ("```\nA fox at dusk\n```", "A fox at dusk"),
    ('A shop sign that says "OPEN"', 'A shop sign that says "OPEN"'),  # quoted text kept
    ('"OPEN" on one sign, "CLOSED" on the other', '"OPEN" on one sign, "CLOSED" on the other'),
    ("Un renard roux au crépuscule", "Un renard roux au crépuscule"),
])
async def test_the_answer_is_cleaned(chat: ChatEndpoint, enhancer: PromptEnhancer,
                                     answer: str, prompt: str) -> None:
    chat.behaviour = Behaviour(content=answer)
    result = await enhancer.enhance("a fox")
    assert (result.status, result.prompt) == (EnhancementState.REWRITTEN, prompt)


@pytest.mark.parametrize("behaviour", [
    Behaviour(status=500),
    Behaviour(status=307),  # a redirect is not followed (the key would travel with it)
    Behaviour(raw="{not json"),
    Behaviour(raw='{"choices": []}'),
    Behaviour(raw='{"choices": [{"message": {"role": "assistant", "content": null}}]}'),
    Behaviour(content="   "),
    Behaviour(content="<think>still thinking when max_tokens ran out"),
    Behaviour(content="<think>only reasoning</think>"),
], ids=["500", "307", "bad-json", "no-choices", "null", "blank", "unclosed-think", "only-think"])
async def test_an_unusable_answer_falls_back_to_the_original(
        chat: ChatEndpoint, enhancer: PromptEnhancer, behaviour: Behaviour,
        caplog: pytest.LogCaptureFixture) -> None:
    chat.behaviour = behaviour
    with caplog.at_level(logging.WARNING, logger="easel.services.jobs.prompts"):
        result = await enhancer.enhance("a red fox")
    assert (result.status, result.prompt) == (EnhancementState.FALLBACK, "a red fox")
    assert result.detail and SECRET not in result.detail
    assert any("fell back" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text


async def test_a_slow_endpoint_falls_back_within_the_timeout(chat: ChatEndpoint) -> None:
    chat.behaviour = Behaviour(delay=3.0)
    enhancer = PromptEnhancer(chat.url, "tiny-llm", timeout=0.5)
    started = time.monotonic()
    try:
        result = await enhancer.enhance("a red fox")
    finally:
        await enhancer.aclose()
    assert time.monotonic() - started < 2.0  # it did not wait for the 3 s answer
    assert (result.status, result.prompt) == (EnhancementState.FALLBACK, "a red fox")
    assert "0.5s" in (result.detail or "")


async def test_a_closed_port_falls_back() -> None:
    enhancer = PromptEnhancer(closed_port_url(), "tiny-llm", timeout=2.0)
    try:
        result = await enhancer.enhance("a red fox")
    finally:
        await enhancer.aclose()
    assert (result.status, result.prompt) == (EnhancementState.FALLBACK, "a red fox")
    assert "ConnectError" in (result.detail or "")


async def test_a_long_answer_is_cut_at_a_word_boundary_or_refused(chat: ChatEndpoint) -> None:
    enhancer = PromptEnhancer(chat.url, "tiny-llm", max_chars=20)
    try:
        chat.behaviour = Behaviour(content="alpha beta gamma, delta epsilon zeta")
        assert (await enhancer.enhance("x")).prompt == "alpha beta gamma"
        chat.behaviour = Behaviour(content="alpha beta gamma del eta")  # space at 21st char
        assert (await enhancer.enhance("x")).prompt == "alpha beta gamma del"
        chat.behaviour = Behaviour(content="x" * 50)
        refused = await enhancer.enhance("a red fox")
    finally:
        await enhancer.aclose()
    assert (refused.status, refused.prompt) == (EnhancementState.FALLBACK, "a red fox")
    assert "20 characters" in (refused.detail or "")


async def test_an_injected_client_is_used_and_left_open(chat: ChatEndpoint) -> None:
    async with httpx.AsyncClient() as client:
        enhancer = PromptEnhancer(chat.url, "tiny-llm", client=client)
        assert (await enhancer.enhance("a cat")).prompt == rewrite("a cat")
        await enhancer.aclose()
        assert not client.is_closed
    owned = PromptEnhancer(chat.url, "tiny-llm")
    await owned.aclose()  # closing an enhancer that never connected is fine
    assert (await owned.enhance("a cat")).status is EnhancementState.REWRITTEN
    await owned.aclose()
    assert (await owned.enhance("a dog")).prompt == rewrite("a dog")  # a fresh client
    await owned.aclose()


@pytest.mark.parametrize(("url", "settings"), [
    ("ftp://user:hunter2@host/v1", {}),
    ("127.0.0.1:11434/v1", {}),
    ("http:///v1", {}),
    ("http://127.0.0.1/v1", {"api_key": "hunter2\r\nX-Evil: 1"}),
    ("http://127.0.0.1/v1", {"timeout": 0}),
    ("http://127.0.0.1/v1", {"max_chars": 0}),
])
def test_settings_that_could_only_fail_are_refused(url: str, settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as refused:
        PromptEnhancer(url, "m", **settings)
    assert "hunter2" not in str(refused.value)
    assert "hunter2" not in repr(PromptEnhancer("http://127.0.0.1/v1", "m", api_key="hunter2"))


def test_not_configured_keeps_the_prompt() -> None:
    result = not_configured("a red fox")
    assert (result.prompt, result.status, result.detail) == (
        "a red fox", EnhancementState.NOT_CONFIGURED, None)
    assert EnhancementState.FALLBACK == "fallback" and EnhancementState.OFF == "off"


# -- the endpoint speaks the protocol the official client speaks --------------------------------


def openai_python() -> str | None:
    """An interpreter that imports `openai`: this one, or the SDK venv tests/sdk_venvs.py has
    already built (never built here: that takes pip and minutes)."""
    if importlib.util.find_spec("openai") is not None:
        return sys.executable
    sdk = ROOT / ".venvs" / "openai"
    return str(sdk / "bin" / "python") if (sdk / ".easel-ready").exists() else None


OPENAI_SCRIPT = """
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="k", max_retries=0, timeout=10)
reply = client.chat.completions.create(
    model="m", messages=[{"role": "user", "content": "a cat"}])
print(json.dumps(reply.choices[0].message.content))
"""


def test_the_official_openai_client_reads_the_endpoint(chat: ChatEndpoint) -> None:
    python = openai_python()
    if python is None:
        pytest.skip("the openai package is not importable here, and .venvs/openai is not built")
    out = subprocess.run([python, "-c", OPENAI_SCRIPT, chat.url], capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == rewrite("a cat")
    assert chat.requests[-1]["auth"] == "Bearer k"
