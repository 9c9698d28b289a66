"""What happens to a prompt before any GPU time is spent: the operator's block list, and the
rewrite through an operator-configured OpenAI-compatible chat endpoint (`enhance_prompt`).

Block list entries are the operator's own: terms match as whole words or phrases (any case,
any run of spaces between the words, after Unicode NFKC folding, so full-width letters do not
slip past), and `re:` entries are Python regular expressions searched case-insensitively.
Prompts are length-limited by the catalog before they get here.
"""

from __future__ import annotations

import asyncio
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


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _term_pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in _fold(term).split()]
    # \b only where the term starts or ends with a word character ("c++" has no end boundary).
    start = r"\b" if re.match(r"\w", words[0]) else ""
    end = r"\b" if re.search(r"\w$", words[-1]) else ""
    return re.compile(start + r"\s+".join(words) + end)


class PromptBlockList:
    def __init__(self, terms: Sequence[str] = (), patterns: Sequence[str] = ()) -> None:
        self._entries: list[tuple[str, re.Pattern[str]]] = []
        for term in terms:
            if term.strip():
                self._entries.append((term.strip(), _term_pattern(term)))
        for pattern in patterns:
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"blocked prompt pattern {pattern!r} is not a valid regular "
                                 f"expression: {exc}") from None
            self._entries.append((REGEX_PREFIX + pattern, compiled))

    @classmethod
    def empty(cls) -> PromptBlockList:
        return cls()

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> PromptBlockList:
        """One entry a line; blank lines and `#` comments skipped; `re:` starts a pattern."""
        terms, patterns = [], []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(REGEX_PREFIX):
                patterns.append(line[len(REGEX_PREFIX):])
            else:
                terms.append(line)
        return cls(terms, patterns)

    @classmethod
    def from_sources(cls, terms: Sequence[str], patterns: Sequence[str],
                     file: Path | None = None) -> PromptBlockList:
        """The settings' terms and patterns, and the entries of the block-list file."""
        combined = cls(terms, patterns)
        if file is not None:
            combined._entries += cls.from_lines(file.read_text("utf-8").splitlines())._entries
        return combined

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, text: str) -> str | None:
        """The entry that matches `text` (a term, or `re:<pattern>`); None when none does."""
        folded = _fold(text)
        for entry, pattern in self._entries:
            # A pattern sees the prompt as written and folded; a term only folded.
            written = entry.startswith(REGEX_PREFIX) and pattern.search(text)
            if written or pattern.search(folded):
                return entry
        return None


DEFAULT_SYSTEM_PROMPT = (
    "You rewrite prompts for a text-to-image model. Given a prompt, answer with one richer "
    "prompt that keeps its subject, its intent and any quoted text exactly, and adds concrete "
    "visual detail: setting, lighting, composition, style, colours. Write in the prompt's own "
    "language, at most 120 words. Answer with the rewritten prompt only: no preamble, no "
    "quotes, no explanation."
)
THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
LABEL = re.compile(r"^(?:rewritten |enhanced |improved )?prompt\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Enhancement:
    prompt: str  # the prompt to draw: the rewrite, or the original on fallback
    status: EnhancementState
    detail: str | None = None  # why it fell back, briefly


class EndpointProblem(Exception):
    """The chat endpoint's answer cannot be used (said briefly, without secrets)."""


class PromptEnhancer:
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
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.system_prompt = system_prompt
        self.max_chars = max_chars
        self._client = client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def enhance(self, prompt: str) -> Enhancement:
        """The rewrite, or the original prompt with the reason when the endpoint fails: a
        rewrite is a nicety, never a reason to refuse a job."""
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._ask(prompt)
            return Enhancement(self._cleaned(answer), EnhancementState.REWRITTEN)
        except TimeoutError:
            detail = f"the prompt endpoint did not answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            detail = f"the prompt endpoint could not be reached ({type(exc).__name__})"
        except EndpointProblem as exc:
            detail = str(exc)
        log.warning("prompt enhancement fell back to the original prompt: %s", detail)
        return Enhancement(prompt, EnhancementState.FALLBACK, detail)

    async def _ask(self, prompt: str) -> str:
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "temperature": 0.7, "max_tokens": 300, "stream": False,
                "messages": [{"role": "system", "content": self.system_prompt},
                             {"role": "user", "content": prompt}]}
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        reply = await self._client.post(self.url, json=body, headers=headers)
        if reply.status_code // 100 != 2:
            raise EndpointProblem(f"the prompt endpoint answered HTTP {reply.status_code}")
        return _answer_text(reply)

    def _cleaned(self, answer: str) -> str:
        text = LABEL.sub("", THINK.sub("", answer).strip()).strip().strip('"“”\'').strip()
        if not text:
            raise_empty()
        if len(text) > self.max_chars:
            cut = text[: self.max_chars].rsplit(" ", 1)[0]
            text = cut or text[: self.max_chars]
        return text


def raise_empty() -> None:
    raise EndpointProblem("the prompt endpoint answered an empty prompt")


def _answer_text(reply: httpx.Response) -> str:
    try:
        payload: Any = reply.json()
        content = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise EndpointProblem("the prompt endpoint's answer is not a chat completion") from None
    if not isinstance(content, str):
        raise EndpointProblem("the prompt endpoint's answer has no text")
    return content
