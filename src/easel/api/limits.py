"""The request body limit, for every dialect: `read_body` refuses a body whose Content-Length is
over the limit before reading any of it, and stops reading a chunked body as soon as it passes
the limit (413). The rate limit and the queue cap are the core's (services/admission.py)."""

from __future__ import annotations

from fastapi import Request


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` (never buffered whole first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
