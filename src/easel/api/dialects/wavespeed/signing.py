"""WaveSpeed's webhook signature (`webhook-signature: v3,<hex>`): HMAC-SHA256 over
`{webhook-id}.{webhook-timestamp}.{body}`, keyed with the caller's secret minus its `whsec_`
prefix (the text itself, not base64-decoded), laid out as Standard Webhooks' headers."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

TOLERANCE_SECONDS = 300  # older (or future) timestamps are refused: a replay


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
