"""`easel generate`: images from a prompt, written to a directory, without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from easel.cli.common import err, fail, load_catalog, settings_from, writable_dir
from easel.domain.errors import EaselError
from easel.domain.request import ImageFormat
from easel.domain.submission import AspectRatioSize, GenerationInput, ModelChoice, WireNames

FORMATS = {"jpg": ImageFormat.JPEG, "jpeg": ImageFormat.JPEG, "png": ImageFormat.PNG,
           "webp": ImageFormat.WEBP}

# The core's parameters as `easel generate` spells them, so its errors name the flag.
CLI_NAMES = WireNames({
    "num_images": "-n", "seed": "--seed", "prompt": "PROMPT", "aspect_ratio": "--aspect-ratio",
    "resolution": "--resolution", "model": "--model", "negative_prompt": "--negative-prompt",
    "output_quality": "--quality",
})


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from easel.runtime.oneshot import generate_files, plan_generation

    settings = settings_from()
    catalog = load_catalog(settings)
    if format.lower() not in FORMATS:
        fail(f"--format must be one of jpg, png, webp; got {format!r}")
    generation = GenerationInput(
        model=ModelChoice(model), prompt=prompt, size=AspectRatioSize(aspect_ratio, resolution),
        num_images=n, negative_prompt=negative_prompt, seed=seed,
        output_format=FORMATS[format.lower()], output_quality=quality,
    )
    try:
        the_plan = plan_generation(settings, catalog, generation, strict, CLI_NAMES)
    except EaselError as exc:
        named = exc.parameter and not exc.message.startswith(exc.parameter)
        fail(f"{exc.parameter}: {exc.message}" if named else exc.message)
    writable_dir(output, "-o")  # before the model loads, not after
    if the_plan.backend.stand_in_reason:
        err.print(f"warning: {the_plan.backend.stand_in_reason}", markup=False, soft_wrap=True)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("loading model", total=the_plan.backend.steps)
        try:
            written, elapsed = generate_files(
                the_plan, settings, output,
                lambda what, step, _total: bar.update(task, description=what, completed=step))
        except EaselError as exc:
            fail(exc.message, code=1)
    for image in written:
        typer.echo(f"{image.path}\tseed={image.seed}")
    err.print(f"{len(written)} image(s) in {elapsed:.2f} s", markup=False)
