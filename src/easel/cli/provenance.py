"""`easel watermark verify` and `easel c2pa`: what an image says of where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from easel.cli.common import fail, load_catalog, settings_from

watermark_app = typer.Typer(no_args_is_help=True, help="easel's invisible watermark.")
c2pa_app = typer.Typer(no_args_is_help=True, help="C2PA content credentials.")


@watermark_app.command("verify")
def watermark_verify(
    image: Annotated[Path, typer.Argument(help="An image file (JPEG, PNG, WEBP)")],
) -> None:
    """Look for easel's invisible watermark; exit 0 when found, 1 when not.

    A resized copy is read at each size of the catalog too (the mark is read at the size it
    was embedded at)."""
    from PIL import Image, UnidentifiedImageError

    from easel.services.images.provenance import read_watermark

    try:
        with Image.open(image) as opened:
            picture = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        fail(f"cannot read {image}: {exc}")
    catalog = load_catalog(settings_from())
    sizes = sorted({(s.width, s.height) for m in catalog.models.values() for s in m.sizes})
    reading = read_watermark(picture, sizes)
    if not reading.found:
        typer.echo("no easel watermark found")
        raise typer.Exit(1)
    assert reading.at_size is not None
    typer.echo(f"easel watermark found (read at {reading.at_size[0]}x{reading.at_size[1]})")


@c2pa_app.command("test-certificate")
def c2pa_test_certificate(
    directory: Annotated[Path, typer.Argument(help="Where to write the chain and the key")],
) -> None:
    """Write a self-made certificate chain and key to try C2PA signing with. Readers show such
    credentials as signed by an untrusted signer; production needs a certificate from a CA on
    the C2PA trust list."""
    from easel.services.images.provenance import make_test_certificate

    directory.mkdir(parents=True, exist_ok=True)
    chain, key = make_test_certificate(directory)
    typer.echo(f"EASEL_C2PA_CERTIFICATE={chain}")
    typer.echo(f"EASEL_C2PA_PRIVATE_KEY={key}")


@c2pa_app.command("read")
def c2pa_read(
    image: Annotated[Path, typer.Argument(help="An image file (JPEG, PNG, WEBP)")],
) -> None:
    """Print an image's content credentials (C2PA manifest store) as JSON; exit 1 if none."""
    from easel.services.images.provenance import read_credentials

    mime = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
            ".webp": "image/webp"}.get(image.suffix.lower())
    if mime is None:
        fail(f"{image}: the name must end in .jpg, .jpeg, .png or .webp")
    try:
        manifest = read_credentials(image.read_bytes(), mime)
    except OSError as exc:
        fail(f"cannot read {image}: {exc}")
    if manifest is None:
        typer.echo("no content credentials")
        raise typer.Exit(1)
    typer.echo(json.dumps(manifest, indent=2))
