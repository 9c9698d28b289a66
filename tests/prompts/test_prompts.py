"""The prompt block list on real text, and the prompt rewrite over real HTTP: an
OpenAI-compatible chat endpoint on loopback (tests/prompts/chat.py) that each test tells how to
behave."""

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
from pathlib import Path
from typing import Any

import httpx
import pytest

from easel.domain.safety import EnhancementState
from easel.services.jobs import prompts
from easel.services.jobs.prompts import (
    DEFAULT_SYSTEM_PROMPT,
    MAX_ANSWER_BYTES,
    MAX_ANSWER_CHARS,
    PromptBlockList,
    PromptEnhancer,
    _without_reasoning,
    not_configured,
)
from tests.prompts.chat import SECRET, Behaviour, ChatEndpoint, rewrite, serving

ROOT = Path(__file__).resolve().parents[2]


# -- the block list -----------------------------------------------------------------------------


TERMS = PromptBlockList(["gore", "red panda", "c++", "straße", "café", "кровь"])


@pytest.mark.parametrize(("text", "entry"), [
    ("some gore here", "gore"),
    ("GORE!", "gore"),
    ("blood and gore\n", "gore"),
    ("a gore-fest", "gore"),  # a hyphen ends a word
    ("Gorey details", None),  # part of a longer word
    ("gore_vidal", "gore"),  # an underscore ends a word, as the tokenizers split there
    ("a red   panda", "red panda"),  # any run of whitespace between a phrase's words
    ("a red\tpanda", "red panda"),
    ("a red\npanda", "red panda"),
    ("a red_panda", "red panda"),
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


# Issue #30, item 4: each spelling of the attack, the nine that got through first. The text
# encoders (T5's SentencePiece normaliser, CLIP's tokenizer) drop controls and invisible
# characters and split words at underscores and digits, so the model read "green" in each.
ATTACK = PromptBlockList(["green", "gore"])


@pytest.mark.parametrize(("text", "entry"), [
    ("a green square", "green"),
    ("A GREEN SQUARE", "green"),
    ("a ｇｒｅｅｎ square", "green"),  # full width
    ("a gr\u200been square", "green"),  # zero-width space
    ("a gr\u00adeen square", "green"),  # soft hyphen
    ("a gore-fest", "gore"),
    ("a green_circle", "green"),  # got through: "_" was a word character
    ("green1 and green2", "green"),  # got through: so were digits
    ("1green", "green"),
    ("a gr\x7feen square", "green"),  # got through: DEL
    ("a gr\x08een square", "green"),  # got through: backspace
    ("a gr\u034feen square", "green"),  # got through: combining grapheme joiner
    ("a gre\ufe0fen square", "green"),  # got through: variation selectors
    ("a gre\U000e0100en square", "green"),
    ("a gr\u3164een square", "green"),  # got through: Hangul fillers
    ("a gr\u115feen square", "green"),
    ("a gr\u1160een square", "green"),
    ("a gr\uffa0een square", "green"),
    ("a g\u043er\u0435 scene", "gore"),  # got through: Cyrillic о and е
    ("A G\u041eR\u0415 SCENE", "gore"),  # capital Cyrillic О and Е
    ("a g\u03bfre scene", "gore"),  # Greek omicron
])
def test_every_spelling_of_a_blocked_word_is_blocked(text: str, entry: str) -> None:
    assert ATTACK.match(text) == entry


@pytest.mark.parametrize("text", [
    "greenery in spring", "an evergreen forest", "Greenland", "a gorgeous sunset",
    "Gorey details", "a gory\u200b tale", "gr een", "gre-en", "g0re",
    "\u0437\u0435\u043b\u0451\u043d\u044b\u0439 \u043b\u0435\u0441",  # Russian: green forest
    "a gor\u00e9 sketch",  # an accent makes another word
])
def test_ordinary_prompts_are_not_blocked(text: str) -> None:
    assert ATTACK.match(text) is None


def test_look_alikes_across_case_match_and_ascii_is_read_as_written() -> None:
    blocked = PromptBlockList(["kill", "com", "area51"])
    assert blocked.match("\u041aILL") == "kill"  # Cyrillic capital К is K (small к is not)
    assert blocked.match("\u039a\u0399LL") == "kill"  # Greek capitals Κ, Ι: TR39 reads Ι as l
    assert blocked.match("k\u0131ll") == "kill"  # dotless ı
    # TR39 reads "rn" as "m": that would block corn by com. ASCII is read as written.
    assert blocked.match("a corn field") is None and blocked.match("a com port") == "com"
    assert blocked.match("ki11, skill, killer") is None
    assert blocked.match("area512") is None  # a number goes on: not the term's number
    assert blocked.match("area51!") == "area51"


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


# -- an OpenAI-compatible chat endpoint on loopback (tests/prompts/chat.py) ---------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[ChatEndpoint]:
    with serving() as chat:
        yield chat


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


# Issue #30, item 5: the reasoning was stripped by a regex that searched to the end of the
# answer from every opening tag without a closing one; 120 KB of `<think>` held the event loop,
# and with it every request, for seconds (minutes at the 1 MiB answer cap).
MIB = 1 << 20


def mib_of(unit: str) -> str:
    return unit * (MIB // len(unit))


@pytest.mark.parametrize(("answer", "prompt"), [
    (mib_of("<think>") + "</think>A fox", "A fox"),  # the first opening tag to its closing one
    (mib_of("<think>"), ""),  # still reasoning when cut off
    ("A fox" + mib_of("<think>"), "A fox"),
    (mib_of("</think>") + "A fox", "A fox"),  # stray closing tags: the last one ends it
    (mib_of("<think>") + mib_of("</think>") + "A fox", "A fox"),  # nested
    (mib_of("<think>x</thinking>") + "A fox", "A fox"),  # closing tags of another name
    (mib_of("<THINK><thinking><reasoning>") + "A fox", ""),
    (mib_of("<think>a</think>") + "A fox", "A fox"),  # many closed blocks
], ids=["opens-then-close", "opens", "prompt-then-opens", "closes", "nested", "other-name",
        "three-names", "closed-blocks"])
def test_reasoning_is_taken_out_of_a_mib_of_tags_in_one_pass(answer: str, prompt: str) -> None:
    assert _without_reasoning(answer).strip() == prompt


async def test_the_answer_is_read_off_the_event_loop(
        chat: ChatEndpoint, enhancer: PromptEnhancer, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the answer is parsed and cleaned, the event loop runs other work: the reading
    waits for a callback that only a free loop can run (a blocked one never would)."""
    loop = asyncio.get_running_loop()
    loop_ran = threading.Event()
    read = prompts._prompt_in

    def reading_while_the_loop_runs(raw: bytes, max_chars: int) -> str:
        loop.call_soon_threadsafe(loop_ran.set)
        if not loop_ran.wait(10):
            raise AssertionError("the event loop was held while the answer was read")
        return read(raw, max_chars)

    monkeypatch.setattr(prompts, "_prompt_in", reading_while_the_loop_runs)
    result = await enhancer.enhance("a red fox")
    assert (result.status, result.detail) == (EnhancementState.REWRITTEN, None)
    assert loop_ran.is_set()


async def test_an_answer_of_a_mib_of_reasoning_tags_falls_back(
        chat: ChatEndpoint, enhancer: PromptEnhancer) -> None:
    chat.behaviour = Behaviour(content="<think>" * ((MAX_ANSWER_BYTES - 1024) // 7))
    refused = await enhancer.enhance("a red fox")
    assert (refused.status, refused.prompt) == (EnhancementState.FALLBACK, "a red fox")
    assert f"over {MAX_ANSWER_CHARS} characters" in (refused.detail or "")
    # Just under the cap, the tags are taken out and the prompt after them is used.
    chat.behaviour = Behaviour(content="<think>" * (MAX_ANSWER_CHARS // 8) + "</think>A fox")
    assert (await enhancer.enhance("a red fox")).prompt == "A fox"


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
