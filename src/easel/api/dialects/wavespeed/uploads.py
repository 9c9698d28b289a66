"""WaveSpeed's media uploads, the way its SDKs send them (protocols.md §2.1): the binary form
(`POST /api/v3/media/upload/binary`, multipart field `file`: SDK 1.x) and the ticket flow
(`POST /api/v3/media/uploads` with `{filename, size, content_type}`, then a PUT of the bytes to
the ticket's URL: SDK 2.x). Either way the image is one of the caller's uploads (the same store
as Runware's imageUpload): decoded and checked as every input image, its `download_url` serves
it, and an edit naming that URL reads it from the store, for this caller only.

A ticket's URL carries its own authority: the SDK sends the PUT with the ticket's headers only,
so the URL names the caller, the reserved id and format, the size asked for and an expiry,
signed with the server's secret (a MAC the PUT checks). The PUT's body must be that size: both
SDKs ask for the exact length of the bytes they then send."""

from __future__ import annotations

import hmac
import uuid
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from easel.api.dialects.common import PayloadTooLarge, validate_wire
from easel.api.limits import BodyTooLarge, HTTPRefusal, read_form, read_raw
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.submission import Caller, ImageInput
from easel.services.port import Port, StoredUpload

TICKET_SECONDS = 3600  # a ticket's PUT must come within the hour
EXT_BY_TYPE = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
EXT_BY_NAME = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}
PURPOSE = "wavespeed-upload"


class TicketRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=1)
    content_type: str | None = None


def uploaded(upload: StoredUpload, base_url: str, filename: str, size: int) -> dict[str, Any]:
    return {"type": "image", "download_url": base_url.rstrip("/") + upload.path,
            "filename": filename, "size": size}


async def binary(request: Request, caller: Caller, port: Port) -> dict[str, Any]:
    """The multipart form's `file` as an upload."""
    limits = port.limits
    try:
        form = await read_form(request, limits.max_body_bytes, limits.body_timeout, max_files=1,
                               max_fields=8, max_field_bytes=64 * 1024)
    except BodyTooLarge:
        raise PayloadTooLarge(limits.max_body_bytes) from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise EaselError(ErrorKind.MISSING, "file is required: a multipart file part",
                             "file")
        data = await file.read()
        stored = await port.upload_image(caller, ImageInput("file", data=data))
        return uploaded(stored, port.images.base_url, file.filename or "upload", len(data))
    finally:
        await form.close()


def ticket(body: dict[str, Any], caller: Caller, port: Port, now: float) -> dict[str, Any]:
    """An upload ticket: where to PUT the bytes (a signed URL), and the URL they will have."""
    wire = validate_wire(TicketRequest, body)
    ext = _ext(wire)
    limit = port.limits.max_body_bytes
    if wire.size > limit:
        raise invalid("size", f"size is over the limit of {limit:,} bytes")
    image_id, expires = str(uuid.uuid4()), int(now) + TICKET_SECONDS
    base = port.images.base_url.rstrip("/")
    signature = _signature(port, caller.principal, image_id, ext, wire.size, expires)
    put = (f"{base}/api/v3/media/uploads/{image_id}.{ext}?caller={_quote(caller.principal)}"
           f"&size={wire.size}&expires={expires}&signature={signature}")
    return {"upload": {"method": "PUT", "url": put,
                       "headers": {"Content-Type": wire.content_type or _type_of(ext)}},
            "download_url": f"{base}/images/{image_id}.{ext}", "filename": wire.filename,
            "size": wire.size, "expires_at": expires}


async def put(request: Request, name: str, port: Port, now: float) -> dict[str, Any]:
    """The bytes of a ticket: checked against its signature and expiry, then kept."""
    query = request.query_params
    image_id, _, ext = name.partition(".")
    principal, size, expires = (query.get(key, "") for key in ("caller", "size", "expires"))
    signature = query.get("signature", "")
    if not (size.isdigit() and expires.isdigit()) or not hmac.compare_digest(
            signature, _signature(port, principal, image_id, ext, int(size), int(expires))):
        # 403, not 401: the URL is the credential, and no key would make it one.
        raise HTTPRefusal(403, "forbidden", "this upload URL is not one easel made",
                          "signature")
    if int(expires) < now:
        raise invalid("expires", "this upload URL has expired: ask for another")
    data = await _body_of_size(request, port, int(size))
    stored = await port.upload_image(Caller(principal), ImageInput("body", data=data),
                                     reserved=(image_id, ext))
    return uploaded(stored, port.images.base_url, name, len(data))


async def _body_of_size(request: Request, port: Port, size: int) -> bytes:
    """The PUT's bytes, exactly the size the ticket was asked for (never over the server's
    limit: a ticket is not given for more)."""
    try:
        data = await read_raw(request, size, port.limits.body_timeout)
    except BodyTooLarge:
        raise HTTPRefusal(413, "payloadTooLarge", f"the body is larger than the {size} bytes "
                          "this upload URL was asked for (size)", "body") from None
    if len(data) != size:
        raise invalid("body", f"the body is {len(data)} bytes, not the {size} this upload URL "
                              "was asked for (size)")
    return data


def _ext(wire: TicketRequest) -> str:
    if wire.content_type is not None:
        ext = EXT_BY_TYPE.get(wire.content_type.split(";")[0].strip().lower())
        if ext is None:
            raise invalid("content_type", f"content_type {wire.content_type[:60]!r}: easel "
                                          "takes PNG, JPEG and WEBP images")
        return ext
    ext = EXT_BY_NAME.get(wire.filename.rpartition(".")[2].lower())
    if ext is None:
        raise invalid("filename", "filename must end in .png, .jpg, .jpeg or .webp (or send "
                                  "content_type): easel takes images only")
    return ext


def _type_of(ext: str) -> str:
    return next(kind for kind, known in EXT_BY_TYPE.items() if known == ext)


def _signature(port: Port, principal: str, image_id: str, ext: str, size: int,
               expires: int) -> str:
    message = f"{principal}\n{image_id}\n{ext}\n{size}\n{expires}".encode()
    return port.sign(PURPOSE, message).hex()


def _quote(text: str) -> str:
    return quote(text, safe="")


def reply(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"code": 200, "message": "success", "data": data})
