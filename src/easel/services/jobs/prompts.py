"""What happens to a prompt before any GPU time is spent: the operator's block list, and the
rewrite through an operator-configured OpenAI-compatible chat endpoint (`enhance_prompt`).

Block list rules (`PromptBlockList`):

- The prompt and every term are folded the same way before matching: Unicode NFKC (full-width
  and other compatibility forms become plain letters), format characters removed (zero-width
  spaces and joiners, soft hyphens: invisible, so they must not split a word), casefold (any
  case, and "ß" matches "ss").
- A term matches as a whole word or phrase: it is not part of a longer word, that is, the
  characters either side of it are not Unicode letters, digits or underscores. "gore" blocks
  "some gore here" and "gore-fest" but not "gorey" or "Gore_Vidal". The words of a phrase
  match across any run of whitespace (spaces, tabs, newlines). Terms are literal text: anything
  fancier is a pattern.
- A pattern (in a file: the rest of a `re:` line, spaces around it trimmed) is a Python regular
  expression, searched case-insensitively in the folded prompt and in the prompt as written; a
  hit in either blocks. A pattern that does not compile, or that matches the empty string (it
  would block every prompt: typically a stray `|`), is refused with ValueError, so the server
  does not start with a bad setting.
- Python's `re` has no time limit. Patterns are written by the operator, not by clients, and
  prompts are length-limited by the catalog before they get here, so a pattern's worst case is
  bounded by what the operator wrote; avoid nested quantifiers such as `(a+)+` (atomic groups
  and possessive quantifiers, `(?>...)` and `a++`, exist for that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from easel.domain.safety import EnhancementState

log = logging.getLogger(__name__)

REGEX_PREFIX = "re:"


# -- the block list -----------------------------------------------------------------------------


def fold(text: str) -> str:
    """The text as the block list compares it: NFKC, no format characters, casefolded."""
    if text.isascii():  # the common case; NFKC and casefold change nothing here but case
        return text.lower()
    normal = unicodedata.normalize("NFKC", text)
    visible = "".join(ch for ch in normal if unicodedata.category(ch) != "Cf")
    # casefold can leave decomposed sequences ("ǰ"); NFKC again so both sides compose alike.
    return unicodedata.normalize("NFKC", visible.casefold())


@dataclass(frozen=True)
class _Entry:
    label: str  # what `match` reports: the term, or `re:<pattern>`
    pattern: re.Pattern[str]
    is_regex: bool


def _term_entry(term: str) -> _Entry | None:
    words = fold(term).split()
    if not words:
        return None
    phrase = r"\s+".join(re.escape(word) for word in words)
    # Lookarounds, not \b: they also hold where a term starts or ends with punctuation ("c++").
    return _Entry(term.strip(), re.compile(rf"(?<!\w){phrase}(?!\w)"), is_regex=False)


def _pattern_entry(pattern: str) -> _Entry:
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"blocked prompt pattern {pattern!r} is not a valid regular "
                         f"expression: {exc}") from None
    if compiled.search("") is not None:
        raise ValueError(f"blocked prompt pattern {pattern!r} matches the empty string, so it "
                         "would block every prompt")
    return _Entry(REGEX_PREFIX + pattern, compiled, is_regex=True)


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
        entries = [_term_entry(term) for term in terms]
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
        folded = fold(text)
        for entry in self._entries:
            # A pattern also sees the prompt as written: the operator may have meant its form.
            if entry.pattern.search(folded) or (entry.is_regex and entry.pattern.search(text)):
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
TEMPERATURE = 0.7
MAX_TOKENS = 300

_REASONING_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
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
            async with asyncio.timeout(self.timeout):  # connect, send and read together
                answer = await self._ask(prompt)
            return Enhancement(_cleaned(answer, self.max_chars), EnhancementState.REWRITTEN)
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

    async def _ask(self, prompt: str) -> str:
        # Streamed so that an endpoint gone wrong cannot make us buffer an unbounded answer.
        async with self._http().stream("POST", self.url, json=self._body(prompt),
                                       headers=self._headers) as reply:
            if not reply.is_success:  # redirects included: the key is not sent on elsewhere
                raise EndpointProblem(f"the prompt endpoint answered HTTP {reply.status_code}")
            raw = await _read_capped(reply, MAX_ANSWER_BYTES)
        return _answer_text(raw)

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
    text = _without_reasoning(answer).strip()
    text = _FENCE.sub(r"\1", text).strip()
    text = _LABEL.sub("", _PREAMBLE.sub("", text)).strip()
    text = _unquoted(text)
    if not text:
        raise EndpointProblem("the prompt endpoint answered an empty prompt")
    return _bounded(text, max_chars)


def _without_reasoning(answer: str) -> str:
    text = _REASONING_BLOCK.sub("", answer)
    # Some servers (llama.cpp, vLLM's reasoning parsers) drop the opening tag: what precedes a
    # stray closing tag is reasoning.
    closings = list(_REASONING_CLOSE.finditer(text))
    if closings:
        text = text[closings[-1].end():]
    # An answer cut off at max_tokens while still reasoning holds no prompt after the tag.
    opening = _REASONING_OPEN.search(text)
    return text[: opening.start()] if opening else text


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
