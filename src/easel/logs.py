"""How easel's processes log: one handler on stderr, plain text or one JSON object a line
(`--log-json`), every record passed through a filter that masks secrets.

easel's own loggers (`easel.*`) say what an operator follows: models loading (with seconds),
ready, each job's lifecycle, each delivery, and the access log (`easel.access`, written by the
app, so that query strings are masked too). uvicorn's loggers go through the same handler; its
own access log is off.

Secrets are masked in the message and in every field: API keys (easel's `easel_<id>_<secret>`
and the configured plain ones), webhook secrets (`whsec_...`), bearer tokens, and the signature
and key parameters of URLs (presigned URLs, Google's `?key=`).
"""

from __future__ import annotations

import logging
import logging.config
import re
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

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
    (re.compile(r"(?i)([?&](?:" + "|".join(re.escape(p) for p in SECRET_PARAMETERS)
                + r")=)[^&\s\"']+"), r"\1" + MASK),
)
# The standard attributes of a LogRecord: anything else on a record is a field someone added.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


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
        {"()": "pythonjsonlogger.json.JsonFormatter",
         "fmt": "%(levelname)s %(name)s %(message)s",
         # ISO 8601 in UTC, as log shippers parse it; uvicorn's `color_message` (its message
         # again, with terminal colours) is left out
         "timestamp": "time", "rename_fields": {"levelname": "level", "name": "logger"},
         "reserved_attrs": [*RESERVED_ATTRS, "color_message"], "json_ensure_ascii": False}
        if json_lines else {"format": text})
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
