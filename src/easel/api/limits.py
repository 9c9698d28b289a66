"""The request body, for every dialect: `read_body` refuses a body whose Content-Length is over
the limit before reading any of it, stops reading a chunked body as soon as it passes the limit
(413), refuses a body that is not JSON (415: a web page can send `text/plain` across sites
without asking, JSON it cannot), and gives up on a body that trickles in (408). `read_form`
does the same for a multipart body (OpenAI's image edits), parsed with python-multipart only
once it is whole and within the limit. The rate limit and the queue cap are the core's
(services/jobs/admission.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

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


def media_type(content_type: str | None) -> str | None:
    return None if content_type is None else content_type.split(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    media = media_type(content_type)
    if media is None:  # no header at all: not what a cross-site form sends
        return True
    return media == "application/json" or media.endswith("+json")


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def is_form(content_type: str | None) -> bool:
    """A form body: multipart (files), or URL-encoded (text fields only)."""
    return media_type(content_type) in FORM_TYPES


async def read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, refused as soon as it passes `limit` (never buffered whole first)."""
    if not is_json(request.headers.get("content-type")):
        raise BodyRefused(415, "unsupportedContentType",
                          "the body must be JSON (Content-Type: application/json)",
                          "Content-Type")
    return await read_raw(request, limit, timeout)


async def read_form(request: Request, limit: int, timeout: float = 30.0, *, max_files: int,
                    max_fields: int, max_field_bytes: int) -> FormData:
    """A form body (FORM_TYPES): read whole within `limit` and `timeout` like any body, then
    parsed; more files or text fields than allowed, a text field over `max_field_bytes` or a
    malformed body is refused naming the body."""
    body = await read_raw(request, limit, timeout)

    async def whole() -> AsyncGenerator[bytes, None]:
        yield body

    if media_type(request.headers.get("content-type")) != "multipart/form-data":
        return await FormParser(request.headers, whole()).parse()
    parser = MultiPartParser(request.headers, whole(), max_files=max_files,
                             max_fields=max_fields, max_part_size=max_field_bytes)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise BodyRefused(400, "invalidMultipart", f"the multipart body was refused: "
                          f"{exc.message}", "body") from None


async def read_raw(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """A body of any type (JSON's, a form's, an upload's bytes), within `limit` and
    `timeout`."""
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
