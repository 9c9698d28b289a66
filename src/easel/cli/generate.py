"""`easel generate`: images from a prompt, written to a directory. Through the running server
when one answers (its loaded model, its queue; the job shows in `easel jobs` and the
playground), else in this process."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from easel.cli.common import err, fail, load_catalog, settings_from, writable_dir
from easel.cli.jobs import ServerKey, ServerURL, server_url
from easel.domain.errors import EaselError
from easel.domain.lora import LoraChoice
from easel.domain.request import ImageFormat
from easel.domain.submission import AspectRatioSize, GenerationInput, ModelChoice, WireNames

FORMATS = {"jpg": ImageFormat.JPEG, "jpeg": ImageFormat.JPEG, "png": ImageFormat.PNG,
           "webp": ImageFormat.WEBP}

# The core's parameters as `easel generate` spells them, so its errors name the flag.
CLI_NAMES = WireNames({
    "num_images": "-n", "seed": "--seed", "prompt": "PROMPT", "aspect_ratio": "--aspect-ratio",
    "resolution": "--resolution", "model": "--model", "negative_prompt": "--negative-prompt",
    "output_quality": "--quality", "loras": "--lora",
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
    lora: Annotated[list[str] | None, typer.Option(
        help="An allow-listed LoRA adapter (`easel lora list`), NAME or NAME=WEIGHT; "
             "repeatable")] = None,
    strict: Annotated[bool, typer.Option(help="Refuse offline stand-ins")] = False,
    url: ServerURL = None,
    key: ServerKey = None,
    local: Annotated[bool, typer.Option(
        "--local", help="Generate in this process even when a server answers")] = False,
) -> None:
    """Generate images from a prompt and write them to a directory: through the running
    server when one answers (see --url), else in this process (loading the model each run)."""
    if format.lower() not in FORMATS:
        fail(f"--format must be one of jpg, png, webp; got {format!r}")
    writable_dir(output, "-o")  # before any work, not after
    generation = GenerationInput(
        model=ModelChoice(model), prompt=prompt, size=AspectRatioSize(aspect_ratio, resolution),
        num_images=n, negative_prompt=negative_prompt, seed=seed,
        output_format=FORMATS[format.lower()], output_quality=quality,
        loras=tuple(_lora_choice(text) for text in lora or ()),
    )
    note = None
    if not local:
        base = server_url(url)
        if answers(base):
            on_server(base, key, job_input(generation), output, strict)
            return
        if url is not None:
            fail(f"no easel server answers at {base} (--url, EASEL_URL); start one, or pass "
                 "--local to generate in this process", code=1)
        note = (f"no server answers at {base}: generating in this process (a running `easel "
                "serve` keeps the model loaded between runs)")
    in_process(generation, strict, output, note)


def _lora_choice(text: str) -> LoraChoice:
    """`NAME` or `NAME=WEIGHT` (an AIR id such as civitai:1@2 holds no `=`)."""
    name, equals, weight = text.partition("=")
    if not equals:
        return LoraChoice(name)
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # nan and inf too: JSON, which carries it, has neither
        fail(f"--lora {text}: the weight after '=' must be a number")
    return LoraChoice(name, value)


def job_input(generation: GenerationInput) -> dict[str, Any]:
    """The same request as the body of easel's `POST /easel/jobs`."""
    assert isinstance(generation.size, AspectRatioSize)  # what this command builds
    body = {"model": generation.model.id, "prompt": generation.prompt,
            "aspect_ratio": generation.size.aspect_ratio, "resolution": generation.size.resolution,
            "num_images": generation.num_images, "seed": generation.seed,
            "negative_prompt": generation.negative_prompt,
            "output_format": generation.output_format.value,
            "output_quality": generation.output_quality,
            "loras": [{"name": c.name, "weight": c.weight} if c.weight is not None
                      else {"name": c.name} for c in generation.loras] or None}
    return {name: value for name, value in body.items() if value is not None}


def progress_bar() -> Any:
    """The bar both ways of generating show on stderr: what is happening, steps, time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err)


def in_process(generation: GenerationInput, strict: bool, output: Path,
               note: str | None) -> None:
    """The images drawn here: the model loaded for this run alone. `note`, said once the
    request is valid (a bad one is a single line), is why it runs here."""
    from easel.runtime.oneshot import generate_files, plan_generation

    settings = settings_from()
    catalog = load_catalog(settings)
    try:
        the_plan = plan_generation(settings, catalog, generation, strict, CLI_NAMES)
    except EaselError as exc:
        named = exc.parameter and not exc.message.startswith(exc.parameter)
        fail(f"{exc.parameter}: {exc.message}" if named else exc.message)
    if note is not None:
        err.print(note, markup=False, soft_wrap=True)
    if the_plan.backend.stand_in_reason:
        # Here, on the operator's own machine, say where the weights were looked for too.
        from easel.services.jobs.planning import BackendResolver

        why = BackendResolver.from_settings(settings, catalog).absence(the_plan.model.backend)
        err.print(f"warning: {the_plan.backend.stand_in_reason}" + (f" ({why})" if why else ""),
                  markup=False, soft_wrap=True)
    with progress_bar() as bar:
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


# The server's parameter names (easel's API) as this command spells them.
FLAGS = {"model": "--model", "prompt": "PROMPT", "aspect_ratio": "--aspect-ratio",
         "resolution": "--resolution", "num_images": "-n", "seed": "--seed",
         "negative_prompt": "--negative-prompt", "output_quality": "--quality",
         "loras": "--lora"}


def answers(base: str) -> bool:
    """Whether an easel server answers at `base` now (a quick /livez)."""
    import httpx

    try:
        return httpx.get(f"{base}/livez", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def on_server(base: str, key: str | None, body: dict[str, Any], output: Path,
              strict: bool) -> None:
    """Submit to the server's queue, follow the job's progress, write its images."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        if strict:
            _refuse_stand_in(client, body["model"])
        reply = client.post("/easel/jobs", json=body)
        if reply.status_code >= 400:
            fail(_server_error(reply))
        job = reply.json()
        err.print(f"job {job['id']} on {base}", markup=False)
        with progress_bar() as bar:
            task = bar.add_task("queued", total=None)
            job = _follow(client, job["id"], lambda j: bar.update(
                task, description=j["status"], completed=j["progress"]["step"],
                total=j["progress"]["total"] or None))
        if job["status"] != "completed":
            error = job.get("error") or {}
            fail(f"the job {job['status']}: {error.get('message', '')}".rstrip(": "), code=1)
        if job.get("stand_in_reason"):
            err.print(f"warning: {job['stand_in_reason']}", markup=False, soft_wrap=True)
        _write_images(client, job, output)


def _write_images(client: Any, job: dict[str, Any], output: Path) -> None:
    """Each delivered image into `output`, named as the in-process run names them."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    extension = ImageFormat(job["output_format"]).extension
    for image in job["outputs"]:
        if image.get("withheld"):
            err.print(f"image {image['index']} was withheld ({image['withheld']})", markup=False)
            continue
        path = output / f"easel-{stamp}-{image['index']}-{image['seed']}.{extension}"
        path.write_bytes(client.get(image["url"]).raise_for_status().content)
        typer.echo(f"{path}\tseed={image['seed']}")


def _follow(client: Any, job_id: str, shown: Any) -> dict[str, Any]:
    """The job once it has ended, following its event stream (reconnecting if it is cut)."""
    import json

    import httpx

    while True:
        try:
            with client.stream("GET", f"/easel/jobs/{job_id}/events", timeout=None) as events:
                for line in events.iter_lines():
                    if line.startswith("data: "):
                        job: dict[str, Any] = json.loads(line[6:])
                        shown(job)
                        if job["status"] in ("completed", "failed", "cancelled"):
                            return job
        except httpx.HTTPError:
            time.sleep(1)  # the server restarted: the job is kept; look again


def _refuse_stand_in(client: Any, model: str) -> None:
    tiers = client.get("/easel/models").json()["tiers"]
    for tier in tiers:
        if any(m["id"] == model for m in tier["models"]) and tier["stand_in"]:
            fail(f"strict: the weights of {tier['source']} are absent on the server, which "
                 f"would draw with the stand-in {tier['stand_in']}; `easel pull {tier['tier']}` "
                 "there fetches them")


def _server_error(reply: Any) -> str:
    """The server's refusal, naming this command's flag for the parameter."""
    try:
        error = reply.json()["error"]
        message, parameter = error["message"], error.get("parameter")
    except (ValueError, KeyError, TypeError):
        return f"the server answered {reply.status_code}"
    flag = FLAGS.get((parameter or "").partition("[")[0])  # loras[1] -> --lora
    return f"{flag}: {message}" if flag else message
