"""The request body, for every dialect: `read_body` refuses a body whose Content-Length is over
the limit before reading any of it, stops reading a chunked body as soon as it passes the limit
(413), refuses a body that is not JSON (415: a web page can send `text/plain` across sites
without asking, JSON it cannot), and gives up on a body that trickles in (408). The rate limit
and the queue cap are the core's (services/jobs/admission.py)."""

from __future__ import annotations

import asyncio

from fastapi import Request

from easel.domain.errors import EaselError, ErrorKind


class HTTPRefusal(EaselError):
    """A refusal with an HTTP status of its own, whatever the dialect's table says."""

    def __init__(self, status: int, code: str, message: str, parameter: str | None) -> None:
        kind = ErrorKind.TIMEOUT if status == 408 else ErrorKind.INVALID
        super().__init__(kind, message, parameter)
        self.status = status
        self.code = code


class BodyTooLarge(HTTPRefusal):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payloadTooLarge", f"request body is larger than {limit} bytes",
                         "body")
        self.limit = limit


class BodyRefused(HTTPRefusal):
    """Not JSON, or too slow."""


def _is_json(content_type: str | None) -> bool:
    if content_type is None:  # no header at all: not what a cross-site form sends
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, refused as soon as it passes `limit` (never buffered whole first)."""
    if not _is_json(request.headers.get("content-type")):
        raise BodyRefused(415, "unsupportedContentType",
                          "the body must be JSON (Content-Type: application/json)",
                          "Content-Type")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(408, "timeoutBody", f"the body did not arrive within {timeout:g}s",
                          "body") from None
    return b"".join(chunks)
