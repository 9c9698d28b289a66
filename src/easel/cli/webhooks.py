"""`easel webhooks verify`: check a delivery's signature, as a receiver would."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from easel.cli.common import fail
from easel.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Webhook signatures.")


def _webhook_secret_problem(secret: str, scheme: str) -> str | None:
    """What is wrong with `secret` as a signing secret of `scheme`, or None. Checked before
    verifying so that a placeholder or truncated secret is a usage error (exit 2) and not a
    signature that merely fails to match (exit 1) or a library's traceback."""
    import base64
    import binascii

    text = secret.removeprefix("whsec_")
    if scheme == "wavespeed":  # WaveSpeed keys with the secret's text itself
        return None if text.strip() else "is empty"
    if not text.strip():
        return "is empty: expected whsec_<base64>"
    try:  # Standard Webhooks keys with the base64-decoded bytes; unpadded base64 is accepted
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return "is not whsec_ followed by base64"  # the secret itself is never printed
    return None


@app.command("verify")
def webhooks_verify(
    body_file: Annotated[Path, typer.Option(help="The exact bytes received")],
    header: Annotated[
        list[str], typer.Option(help="'name: value', repeated (webhook-id, -timestamp, -signature)")
    ],
    secret: Annotated[
        str | None, typer.Option(help="whsec_... (default: EASEL_WEBHOOK_SECRET)")
    ] = None,
    scheme: Annotated[
        str, typer.Option(help="standard (v1, Runware's webhooks) or wavespeed (v3; the secret "
                               "from GET /api/v3/webhook/secret)")
    ] = "standard",
) -> None:
    """Check a delivery's signature; exit 0 when valid, 1 when not (a header value that does
    not parse, such as a timestamp that is no number, included), 2 when the secret or a
    --header argument is malformed."""
    from easel.api.dialects.wavespeed.signing import verify_v3
    from easel.services.delivery.signing import verify

    if scheme not in ("standard", "wavespeed"):
        fail(f"--scheme must be standard or wavespeed, got {scheme!r}")
    if scheme == "wavespeed" and secret is None:
        fail("--secret is required with --scheme wavespeed (the key's secret from "
             "GET /api/v3/webhook/secret)")
    source = "--secret" if secret is not None else "EASEL_WEBHOOK_SECRET"
    if secret is None:
        secret = Settings().webhook_secret
        if not secret:
            fail("--secret is required (or set EASEL_WEBHOOK_SECRET)")
    problem = _webhook_secret_problem(secret, scheme)
    if problem:
        fail(f"{source} {problem}")
    headers = {}
    for line in header:
        name, sep, value = line.partition(":")
        if not sep:
            fail(f"--header must be 'name: value', got {line!r}")
        headers[name.strip().lower()] = value.strip()
    try:
        if scheme == "wavespeed":
            verify_v3(secret, body_file.read_bytes(), headers)
        else:
            verify(secret, body_file.read_bytes(), headers)
    except (ValueError, OSError) as exc:
        fail(str(exc), code=1)
    typer.echo("valid")
