"""Standard Webhooks signatures (webhook-id, webhook-timestamp, `webhook-signature: v1,<base64>`):
HMAC-SHA256 over `id.timestamp.body` keyed with the base64-decoded secret (`whsec_<base64>`),
computed by the `standardwebhooks` reference library, so receivers can verify with any Standard
Webhooks implementation. A dialect whose provider signs another way brings its own signer
(WaveSpeed's `v3`: easel.api.dialects.wavespeed.signing)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


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
