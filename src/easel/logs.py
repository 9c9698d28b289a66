"""How easel's processes log: one handler on stderr, plain text or one JSON object a line
(`--log-json`), every record passed through a filter that masks secrets.

easel's own loggers (`easel.*`) say what an operator follows: models loading (with seconds),
ready, each job's lifecycle, each delivery, and the access log (`easel.access`, written by the
app, so that query strings are masked too). uvicorn's loggers go through the same handler; its
own access log is off.

Secrets are masked in the message and in every field: API keys (easel's `easel_<id>_<secret>`
and the configured plain ones), webhook secrets (`whsec_...`), bearer tokens, and the signature
and key parameters of URLs (presigned URLs, Google's `?key=`).

Callers' text (a prompt, a URL, an error message that quotes them) may hold characters a
terminal acts on: ESC sequences, BEL, a newline that starts a forged log line, a right-to-left
override that reorders what is shown. `visible` shows each escaped (`\\x1b`, `\\u202e`): the text
log writes every line through it, and the CLI prints callers' text through it. The JSON log
keeps the text as it was, written with JSON's own escapes for the same characters.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS, LogData
from pythonjsonlogger.json import JsonFormatter

MASK = "***"
LEVELS = ("debug", "info", "warning", "error")
# Query parameters whose values are credentials: Google's key, presigned URLs' signatures
# (S3's X-Amz-*, Azure's sig), tokens.
SECRET_PARAMETERS = ("key", "api_key", "apikey", "token", "access_token", "sig", "signature",
                     "x-amz-signature", "x-amz-credential", "x-amz-security-token",
                     "x-goog-signature", "x-goog-credential")
_PATTERNS = (  # (what, what it becomes): group 1, when there is one, is kept
    (re.compile(r"easel_[0-9a-f]{8}_[A-Za-z0-9_-]+"), MASK),  # easel's own keys
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), MASK),  # Standard Webhooks secrets
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1" + MASK),
    # A URL's password (postgresql://user:PASSWORD@host/db, https://user:token@host/...)
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s\"']*:)[^@/\s\"']+(@)", re.I), r"\1" + MASK + r"\2"),
    (re.compile(r"(?i)([?&](?:" + "|".join(re.escape(p) for p in SECRET_PARAMETERS)
                + r")=)[^&\s\"']+"), r"\1" + MASK),
)
# The standard attributes of a LogRecord: anything else on a record is a field someone added.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _invisible(char: str) -> bool:
    """Control characters (C0, DEL, C1), format characters (bidirectional overrides and
    isolates, zero-width ones), line and paragraph separators, surrogates, unassigned code
    points: what str.isprintable() refuses, but for spaces (U+00A0, U+3000 show as spaces)."""
    return not char.isprintable() and unicodedata.category(char) != "Zs"


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF \
        else f"\\U{code:08x}"


def visible(text: str) -> str:
    """`text` with every character a terminal would act on or not show escaped as Python
    writes it (`\\x1b`, `\\u202e`, `\\n`): safe to print, and what it holds can be seen."""
    if text.isprintable():  # nearly always: nothing to do
        return text
    return "".join(_escape(c) if _invisible(c) else c for c in text)


class VisibleText(logging.Formatter):
    """The text log: a record's message through `visible`, so that a caller's text can neither
    drive the terminal nor forge a line; a traceback's lines each (it keeps its line breaks,
    an exception's message spanning lines included)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return visible(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _visible_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _visible_lines(super().formatStack(stack_info))


def _visible_lines(text: str) -> str:
    return "\n".join(visible(line) for line in text.split("\n"))


class VisibleJson(JsonFormatter):
    """The JSON log, without raw characters a terminal acts on even when it is read as text:
    JSON escapes the C0 controls itself; the others (C1, bidirectional overrides, ...) get
    JSON's \\u escapes too, so the values decode to exactly what was logged."""

    def jsonify_log_record(self, log_data: LogData) -> str:
        line = super().jsonify_log_record(log_data)
        if line.isprintable():
            return line
        return "".join(json.dumps(c)[1:-1] if _invisible(c) else c for c in line)


class MaskSecrets(logging.Filter):
    """Masks secrets in a record's message and fields, before any handler formats it."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so that a key containing another is masked whole. Short values are
        # left alone: masking "ab" everywhere would mangle every message.
        self.literals = sorted({s for s in literals if s and len(s) >= 8}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for literal in self.literals:
            text = text.replace(literal, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.mask(record.getMessage())
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, name, self.mask(value))
        return True


def configure(level: str = "info", json_lines: bool = False,
              secrets: Iterable[str] = ()) -> None:
    """Sets up logging for a server or worker process: every logger, uvicorn's included,
    through one stderr handler at `level` (easel's own and uvicorn's; libraries at WARNING)."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    formatter: dict[str, Any] = (
        {"()": VisibleJson,
         "fmt": "%(levelname)s %(name)s %(message)s",
         # ISO 8601 in UTC, as log shippers parse it; uvicorn's `color_message` (its message
         # again, with terminal colours) is left out
         "timestamp": "time", "rename_fields": {"levelname": "level", "name": "logger"},
         "reserved_attrs": [*RESERVED_ATTRS, "color_message"], "json_ensure_ascii": False}
        if json_lines else {"()": VisibleText, "fmt": text})
    ours = {"level": level.upper(), "handlers": ["stderr"], "propagate": False}
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"secrets": {"()": MaskSecrets, "literals": list(secrets)}},
        "formatters": {"main": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "main", "filters": ["secrets"]}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {"easel": ours, "uvicorn": ours, "uvicorn.error": {"level": level.upper()},
                    "uvicorn.access": {"level": "WARNING"}},
    })


def masked_query(query: str) -> str:
    """A query string with the values of credential parameters masked, for the access log."""
    return MaskSecrets().mask("?" + query)[1:] if query else ""
