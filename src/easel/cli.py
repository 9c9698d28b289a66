"""The `easel` command: serve, generate, models, pull."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from easel.catalog import Catalog
from easel.domain.errors import EaselError
from easel.domain.request import GenerationRequest, ImageFormat
from easel.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
out = Console()
err = Console(stderr=True)

FORMATS = {
    "jpg": ImageFormat.JPEG,
    "jpeg": ImageFormat.JPEG,
    "png": ImageFormat.PNG,
    "webp": ImageFormat.WEBP,
}


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_catalog(settings: Settings) -> Catalog:
    overlays = [settings.catalog_file] if settings.catalog_file else []
    return Catalog.load(*overlays)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw")],
    model: Annotated[
        str, typer.Option(help="A public model id (see `easel models`)")
    ] = "google:2@3",
    aspect_ratio: Annotated[str, typer.Option(help="1:1, 3:4, 4:3, 9:16 or 16:9")] = "1:1",
    resolution: Annotated[str, typer.Option(help="1k, or 2k where the model allows it")] = "1k",
    n: Annotated[int, typer.Option("-n", "--num-images", help="How many images")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed of the first image; s, s+1, ...")] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What to avoid")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory")] = Path("."),
    format: Annotated[str, typer.Option(help="jpg, png or webp")] = "jpg",
    quality: Annotated[int, typer.Option(help="JPEG/WEBP quality 1..100")] = 95,
    strict: Annotated[bool, typer.Option(help="Refuse offline stand-ins")] = False,
) -> None:
    """Generate images from a prompt and write them to a directory."""
    from easel.services.generation import BackendResolver, plan

    settings = Settings()
    catalog = load_catalog(settings)
    if format.lower() not in FORMATS:
        fail(f"--format must be one of jpg, png, webp; got {format!r}")
    try:
        entry = catalog.model(model, parameter="--model")
        size = entry.size_for(aspect_ratio, resolution)
        request = GenerationRequest(
            model=model,
            prompt=prompt,
            width=size.width,
            height=size.height,
            num_images=n,
            negative_prompt=negative_prompt,
            seed=seed,
            output_format=FORMATS[format.lower()],
            output_quality=quality,
        )
        resolver = BackendResolver(strict or settings.strict, settings.fallback_max_steps,
                                   catalog.mini)
        the_plan = plan(request, catalog, resolver)
    except EaselError as exc:
        fail(_cli_message(exc))
    if the_plan.backend.fallback_reason:
        err.print(f"warning: {the_plan.backend.fallback_reason}", markup=False, soft_wrap=True)
    _run_generation(the_plan, settings, output)


def _cli_message(exc: EaselError) -> str:
    names = {
        "num_images": "-n",
        "seed": "--seed",
        "prompt": "PROMPT",
        "size": "--aspect-ratio",
        "aspect_ratio": "--aspect-ratio",
        "resolution": "--resolution",
        "model": "--model",
        "negative_prompt": "--negative-prompt",
        "output_quality": "--quality",
    }
    flag = names.get(exc.parameter or "", exc.parameter)
    message = (
        exc.message.replace("num_images", "-n") if exc.parameter == "num_images" else exc.message
    )
    return f"{flag}: {message}" if flag else message


def _run_generation(the_plan: object, settings: Settings, output: Path) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from easel.engine import Engine
    from easel.services.generation import Plan
    from easel.services.images import encode

    assert isinstance(the_plan, Plan)
    engine = Engine.from_settings(settings)
    output.mkdir(parents=True, exist_ok=True)
    request = the_plan.request
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("loading model", total=the_plan.backend.steps)
        engine.pipeline(the_plan.backend.source)
        bar.update(task, description="denoising")
        started = time.perf_counter()
        try:
            images = engine.generate(
                the_plan.batch(), progress=lambda step, total: bar.update(task, completed=step)
            )
        except EaselError as exc:
            fail(exc.message, code=1)
    elapsed = time.perf_counter() - started
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for index, image in enumerate(images):
        metadata = {
            "model": request.model,
            "backend": the_plan.backend.source,
            "stand_in": the_plan.backend.is_fallback,
            "seed": image.seed,
            "prompt": request.prompt,
            "steps": the_plan.backend.steps,
            "width": image.width,
            "height": image.height,
        }
        if the_plan.backend.fallback_reason:
            metadata["stand_in_reason"] = the_plan.backend.fallback_reason
        data = encode(image.pixels, request.output_format, request.output_quality, metadata)
        path = output / f"easel-{stamp}-{index}-{image.seed}.{request.output_format.extension}"
        path.write_bytes(data)
        typer.echo(f"{path}\tseed={image.seed}")
    err.print(f"{len(images)} image(s) in {elapsed:.2f} s", markup=False)


@app.command()
def models() -> None:
    """List the catalog: public ids, tiers, backends, weights, sizes, limits and prices."""
    from easel.services.generation import BackendResolver

    settings = Settings()
    catalog = load_catalog(settings)
    resolver = BackendResolver(settings.strict, settings.fallback_max_steps, catalog.mini)
    table = Table(title="easel model catalog")
    for column in (
        "model id",
        "provider",
        "tier",
        "backend",
        "weights",
        "sizes",
        "images",
        "prompt",
        "price/image",
    ):
        table.add_column(column)
    for model_id in catalog.model_ids:
        m = catalog.model(model_id)
        present = resolver.present(m.backend.source)
        weights = "present" if present else f"absent -> {resolver.stand_in(m.backend)}"
        sizes = ", ".join(str(s) for s in m.sizes)
        table.add_row(
            m.id,
            m.provider,
            m.tier.name,
            m.backend.source,
            weights,
            sizes,
            f"1..{m.max_images}",
            f"{m.prompt_min}..{m.prompt_max}",
            f"${m.price_usd:.3f}",
        )
    wide = Console(width=max(out.width, 200))
    wide.print(table)
    absent = {
        m.backend.source for m in catalog.models.values() if not resolver.present(m.backend.source)
    }
    for source in sorted(absent):
        err.print(
            f"warning: weights of {source} are absent; offline stand-in in use "
            f"(`easel pull` fetches them)",
            markup=False,
        )


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="A public model id, a tier or a backend name")],
) -> None:
    """Download a backend's weights with huggingface_hub (resumable, with progress)."""
    from easel.services.weights import PullError
    from easel.services.weights import pull as pull_weights

    settings = Settings()
    catalog = load_catalog(settings)
    try:
        backend = catalog.backend_for(name)
        path = pull_weights(backend)
    except EaselError as exc:
        fail(exc.message)
    except PullError as exc:
        fail(str(exc), code=1)
    typer.echo(f"{backend.source} -> {path}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Jobs database and images (default: EASEL_DATA_DIR)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Run the API server with its in-process worker (the model loads in the background)."""
    import uvicorn

    from easel.api.app import create_app

    overrides: dict[str, object] = {"host": host, "port": port}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = Settings(**overrides)  # type: ignore[arg-type]
    app_ = create_app(settings)
    # Frames above max_body_bytes get a clear error from the dialect; only far larger ones are
    # cut off by the WebSocket layer itself.
    uvicorn.run(
        app_,
        host=host,
        port=port,
        log_level=log_level,
        ws_max_size=max(16 * 1024 * 1024, settings.max_body_bytes * 4),
        ws_ping_interval=None,
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
