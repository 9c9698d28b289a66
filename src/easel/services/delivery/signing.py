"""Webhook signatures (webhook-id, webhook-timestamp, webhook-signature), two schemes:

- Standard Webhooks (`v1,<base64>`): HMAC-SHA256 over `id.timestamp.body` keyed with the
  base64-decoded secret (`whsec_<base64>`), computed by the `standardwebhooks` reference
  library, so receivers can verify with any Standard Webhooks implementation;
- WaveSpeed's (`v3,<hex>`): the same message, keyed with the secret's text minus `whsec_`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TOLERANCE_SECONDS = 300  # older (or future) timestamps are refused: a replay


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(
    secret: str | None, message_id: str, body: bytes, now: datetime | None = None
) -> dict[str, str]:
    """Headers for one delivery; the id stays the same across retries of that delivery."""
    timestamp = now or datetime.now(tz=UTC)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(timestamp.timestamp()))}
    if secret:
        signature = Webhook(secret).sign(message_id, timestamp, body.decode())
        headers["webhook-signature"] = signature
    return headers


def verify(secret: str, body: bytes, headers: dict[str, str]) -> Any:
    """The parsed body when the signature is valid and fresh; raises ValueError otherwise."""
    try:
        return Webhook(secret).verify(body, headers)
    except WebhookVerificationError as exc:
        raise ValueError(f"invalid webhook signature: {exc}") from exc


def v3_headers(
    secret: str, message_id: str, body: bytes, now: datetime | None = None
) -> dict[str, str]:
    """The headers of one delivery signed WaveSpeed's way, laid out as signed_headers'."""
    timestamp = int((now or datetime.now(tz=UTC)).timestamp())
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": v3_signature(secret, message_id, timestamp, body)}


def v3_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """WaveSpeed's `v3,<hex>` signature of one delivery."""
    key = secret.removeprefix("whsec_").encode()
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v3," + hmac.new(key, signed, hashlib.sha256).hexdigest()


def verify_v3(secret: str, body: bytes, headers: dict[str, str], now: float | None = None) -> None:
    """Raises ValueError unless `headers` carry a valid, fresh `v3` signature of `body`."""
    try:
        message_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
        given = headers["webhook-signature"]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"invalid webhook signature: missing or bad header {exc}") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        raise ValueError("invalid webhook signature: the timestamp is too old or too new")
    expected = v3_signature(secret, message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, part) for part in given.split()):
        raise ValueError("invalid webhook signature: no matching v3 signature")
