"""The `easel` command: serve, worker, generate, models, pull, config, jobs, keys, webhooks,
watermark, c2pa."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from easel.catalog import Backend, Catalog, Model
from easel.domain.errors import EaselError
from easel.domain.request import ImageFormat
from easel.domain.submission import AspectRatioSize, GenerationInput, ModelChoice, WireNames
from easel.services.delivery.outbound import is_loopback_host
from easel.services.jobs.planning import BackendResolver
from easel.services.weights.facts import backend_info
from easel.services.weights.files import PullTarget
from easel.settings import (
    CONFIG_ENV,
    Settings,
    SettingsError,
    env_name,
    load_settings,
    setting_source,
)

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from easel.store import KeyStore

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
keys_app = typer.Typer(no_args_is_help=True, help="API keys, stored as SHA-256 hashes.")
webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook signatures.")
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
jobs_app = typer.Typer(no_args_is_help=True, help="Jobs on a running server.")
app.add_typer(jobs_app, name="jobs")
watermark_app = typer.Typer(no_args_is_help=True, help="easel's invisible watermark.")
app.add_typer(watermark_app, name="watermark")
c2pa_app = typer.Typer(no_args_is_help=True, help="C2PA content credentials.")
app.add_typer(c2pa_app, name="c2pa")
config_app = typer.Typer(no_args_is_help=True,
                         help="Settings: flag > environment > settings file > default.")
app.add_typer(config_app, name="config")
out = Console()
err = Console(stderr=True)
serve_log = logging.getLogger("easel.cli")  # serve and worker log; other commands print

FORMATS = {
    "jpg": ImageFormat.JPEG,
    "jpeg": ImageFormat.JPEG,
    "png": ImageFormat.PNG,
    "webp": ImageFormat.WEBP,
}


def _print_version(value: bool) -> None:
    if value:
        from easel import __version__

        typer.echo(f"easel {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version,
                                          is_eager=True, help="Print the version and exit.")
                       ] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Settings file (TOML; default: EASEL_CONFIG, else "
                         "~/.config/easel/easel.toml when it exists)")
    ] = None,
) -> None:
    """Self-hosted text-to-image, wire-compatible with the hosted Imagen 4 APIs."""
    _use_config(config)


def _use_config(config: Path | None) -> None:
    if config is not None:
        # The flag is a spelling of EASEL_CONFIG: every command, and every process it starts,
        # reads the same file.
        os.environ[CONFIG_ENV] = str(config)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="Settings file (TOML), as `easel --config FILE` (default: EASEL_CONFIG)")]
LogLevel = Annotated[str | None, typer.Option(
    help="debug, info, warning or error (default: EASEL_LOG_LEVEL, info)")]
LogJson = Annotated[bool | None, typer.Option(
    "--log-json/--log-text", help="One JSON object a line (default: EASEL_LOG_JSON, text)")]


def _configure_logs(settings: Settings) -> None:
    from easel import logs
    from easel.settings import secret_values

    logs.configure(settings.log_level, settings.log_json, secret_values(settings))


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def settings_from(**flags: object) -> Settings:
    """The settings of this command: its flags (None: not given) over the environment, over
    the settings file, over the defaults; a bad value is one line, not a traceback."""
    try:
        return load_settings(**flags)  # type: ignore[arg-type]  # flags are Settings fields
    except SettingsError as exc:
        fail(str(exc))


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
    from easel.services.jobs.planning import plan, resolve

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
        _model, request = resolve(generation, catalog, CLI_NAMES)
        resolver = BackendResolver.from_settings(settings, catalog, strict)
        the_plan = plan(request, catalog, resolver, names=CLI_NAMES)
    except EaselError as exc:
        named = exc.parameter and not exc.message.startswith(exc.parameter)
        fail(f"{exc.parameter}: {exc.message}" if named else exc.message)
    _writable_dir(output, "-o")  # before the model loads, not after
    if the_plan.backend.fallback_reason:
        err.print(f"warning: {the_plan.backend.fallback_reason}", markup=False, soft_wrap=True)
    _run_generation(the_plan, settings, output)


# The core's parameters as `easel generate` spells them, so its errors name the flag.
CLI_NAMES = WireNames({
    "num_images": "-n", "seed": "--seed", "prompt": "PROMPT", "aspect_ratio": "--aspect-ratio",
    "resolution": "--resolution", "model": "--model", "negative_prompt": "--negative-prompt",
    "output_quality": "--quality",
})


def _writable_dir(path: Path, option: str) -> None:
    """Makes the directory, or fails in one line naming the option."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{option} {path}: {exc.strerror or exc}")
    if not os.access(path, os.W_OK):
        fail(f"{option} {path}: not writable")


def _can_listen(host: str, port: int) -> None:
    """Fails in one line when the address is taken, before anything says it is serving."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _run_generation(the_plan: object, settings: Settings, output: Path) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from easel.engine import Engine
    from easel.services.images.encoding import encode
    from easel.services.jobs.planning import Plan

    assert isinstance(the_plan, Plan)
    engine = Engine.from_settings(settings)
    request = the_plan.request
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("loading model", total=the_plan.backend.steps)
        engine.warm(the_plan.backend.source)
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
        metadata = the_plan.image_metadata(image.seed)
        data = encode(image.pixels, request.output_format, request.output_quality, metadata)
        path = output / f"easel-{stamp}-{index}-{image.seed}.{request.output_format.extension}"
        path.write_bytes(data)
        typer.echo(f"{path}\tseed={image.seed}")
    err.print(f"{len(images)} image(s) in {elapsed:.2f} s", markup=False)


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model id")] = False,
) -> None:
    """List the catalog: public ids, tiers, backends, licences, weights, sizes, limits, prices."""
    settings = settings_from()
    catalog = load_catalog(settings)
    resolver = BackendResolver.from_settings(settings, catalog)
    if as_json:
        typer.echo(json.dumps([_model_entry(catalog.model(m), resolver)
                               for m in catalog.model_ids], indent=2))
        return
    table = Table(title="easel model catalog")
    for column in ("model id", "provider", "tier", "backend", "licence", "weights", "sizes",
                   "images", "prompt", "price/image"):
        # the ids are what a user copies: never cut or wrapped; the rest wraps instead
        table.add_column(column, no_wrap=column in ("model id", "backend"))
    for model_id in catalog.model_ids:
        m = catalog.model(model_id)
        table.add_row(
            m.id,
            m.provider,
            m.tier.name,
            m.backend.source,
            _licence_cell(m.backend, resolver),
            _weights_cell(m.backend, resolver),
            ", ".join(f"{s}{'*' if m.backend.size_path(s.width, s.height) != 'native' else ''}"
                      for s in m.sizes),
            f"1..{m.max_images}",
            f"{m.prompt_min}..{m.prompt_max}",
            f"${m.price_usd:.3f}",
        )
    wide = Console(width=max(out.width, 200))
    wide.print(table)
    wide.print("* drawn in two passes (generate at half size, upscale, refine): beyond what the "
               "model card supports natively (docs/catalog.md)", markup=False)
    _warn_stand_ins(catalog, resolver)


def _model_entry(m: Model, resolver: BackendResolver) -> dict[str, object]:
    from easel.services.weights.facts import backend_info

    backend = m.backend
    return {
        "id": m.id, "provider": m.provider, "tier": m.tier.name,
        **backend_info(backend, resolver),
        "sizes": [{"size": str(s), "aspect_ratio": s.aspect_ratio, "resolution": s.resolution,
                   "path": backend.size_path(s.width, s.height)} for s in m.sizes],
        "max_images": m.max_images, "prompt_chars": [m.prompt_min, m.prompt_max],
        "negative_prompt": m.negative_prompt, "price_usd": m.price_usd,
    }


def _licence_cell(backend: Backend, resolver: BackendResolver) -> str:
    use = "commercial" if backend.license.commercial else "non-commercial"
    refused = " (refused: commercial-only)" if resolver.refusal(backend) else ""
    return f"{backend.license.id} [{use}]{refused}"


def _weights_cell(backend: Backend, resolver: BackendResolver) -> str:
    if resolver.present(backend.source):
        return "present"
    return f"absent -> {resolver.stand_in(backend)}"


def _warn_stand_ins(catalog: Catalog, resolver: BackendResolver) -> None:
    """Say plainly which tiers run on offline stand-ins instead of their real weights."""
    for backend in sorted({m.backend for m in catalog.models.values()}, key=lambda b: b.source):
        refusal = resolver.refusal(backend)
        if refusal is not None:
            serve_log.warning("%s", refusal)
    absent = {m.backend for m in catalog.models.values()
              if not resolver.present(m.backend.source) and resolver.refusal(m.backend) is None}
    for backend in sorted(absent, key=lambda b: b.source):
        hint = resolver.absence(backend) or f"`easel pull {backend.name}` fetches them"
        serve_log.warning("weights of %s are absent; serving the offline stand-in %s (%s)",
                          backend.source, resolver.stand_in(backend), hint,
                          extra={"backend": backend.source,
                                 "stand_in": resolver.stand_in(backend)})


@app.command()
def pull(
    name: Annotated[str, typer.Argument(
        help="A tier, a public model id, a backend name, or a Hugging Face repo id")],
) -> None:
    """Download weights into the Hugging Face cache: the licence first, then progress bars;
    an interrupted pull resumes when run again."""
    from easel.services.weights import files as weights

    settings = settings_from()
    catalog = load_catalog(settings)
    try:
        target = _pull_target(name, catalog)
        out.print(f"{target.repo_id}: licence {_licence_line(target)}", markup=False,
                  soft_wrap=True)
        path = weights.pull(target)
    except EaselError as exc:
        fail(exc.message)
    except weights.PullError as exc:
        fail(str(exc), code=1)
    typer.echo(f"{target.repo_id} -> {path}")


def _pull_target(name: str, catalog: Catalog) -> PullTarget:
    from easel.services.weights import files as weights

    try:
        return weights.target_for(catalog.backend_for(name))
    except EaselError:
        if "/" not in name or name.startswith("easel/"):
            raise
    known = next((b for b in catalog.backends.values() if b.source == name), None)
    return weights.pull_target(name, known.license if known else None)


def _licence_line(target: PullTarget) -> str:
    from easel.services.weights.files import card_license

    if target.license is not None:
        url = target.license.url
        return f"{target.license.describe()}, {url}" if url else target.license.describe()
    declared = card_license(target.repo_id)
    if declared is None:
        return ("unknown (not in the catalog, and no model card could be read or it states "
                "none): read its terms first")
    return f"{declared} (as its model card declares; not in the catalog)"


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: EASEL_HOST, 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: EASEL_PORT, 8000)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Jobs database and images (default: EASEL_DATA_DIR)")
    ] = None,
    log_level: LogLevel = None,
    log_json: LogJson = None,
    config: ConfigFile = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth",
                           help="Listen beyond loopback with no API keys (anyone may call)")
    ] = False,
    worker: Annotated[
        bool | None, typer.Option("--worker/--no-worker",
                                  help="Run the in-process worker (--no-worker: API only; jobs "
                                       "go to `easel worker` processes on the same store; "
                                       "default: EASEL_RUN_WORKER, true)")
    ] = None,
    commercial_only: Annotated[
        bool | None, typer.Option("--commercial-only/--any-licence",
                                  help="Refuse every model whose weights' licence does not "
                                       "allow commercial use (default: EASEL_COMMERCIAL_ONLY)")
    ] = None,
    strict: Annotated[
        bool | None, typer.Option("--strict/--allow-stand-ins",
                                  help="Refuse the jobs of a tier whose real weights are absent "
                                       "instead of serving a stand-in (default: EASEL_STRICT)")
    ] = None,
) -> None:
    """Run the API server with its in-process worker (the model loads in the background).

    SIGTERM: no new jobs are taken, the batch in flight finishes (or is handed back to the queue
    after EASEL_SHUTDOWN_GRACE_SECONDS), and the process exits 0."""
    from easel.runtime.build import build_app

    _use_config(config)
    settings = settings_from(host=host, port=port, data_dir=data_dir,
                             run_worker=worker, commercial_only=commercial_only,
                             strict=strict, log_level=log_level, log_json=log_json)
    _configure_logs(settings)
    _writable_dir(settings.data_dir, "--data-dir")
    host = settings.host
    if not is_loopback_host(host) and not insecure_no_auth and not _has_keys(settings):
        fail(f"--host {host} would expose easel beyond this machine with no API keys; create "
             "one (`easel keys create`), set EASEL_API_KEYS, or pass --insecure-no-auth")
    _can_listen(host, settings.port)
    catalog = load_catalog(settings)
    _warn_stand_ins(catalog, BackendResolver.from_settings(settings, catalog))
    _announce(settings, catalog)
    run_server(build_app(settings), settings)


def _announce(settings: Settings, catalog: Catalog) -> None:
    """Where the playground is, and which tiers run on their real weights."""
    resolver = BackendResolver.from_settings(settings, catalog)
    serve_log.info("playground at %s/ (API reference at /docs)", settings.base_url)
    for tier in catalog.tiers.values():
        facts = backend_info(tier.backend, resolver)  # what /easel/info says of it
        if facts["refused"] is not None:
            state = "refused (licence)"
        elif facts["weights"] == "present":
            state = "real weights"
        elif facts["stand_in"] is None:
            state = "weights absent (strict: its jobs are refused)"
        else:
            state = f"stand-in {facts['stand_in']} (weights absent)"
        serve_log.info("tier %s: %s, %s", tier.name, tier.backend.name, state,
                       extra={"tier": tier.name, "backend": tier.backend.source,
                              "state": state})


def run_server(app_: FastAPI, settings: Settings) -> None:
    """Serve `app_` with uvicorn until SIGTERM or Ctrl-C, then drain and exit."""
    import uvicorn

    from easel.runtime.http import with_header_deadline

    # Frames above max_body_bytes get a clear error from the dialect; only far larger ones are
    # cut off by the WebSocket layer itself.
    config = uvicorn.Config(
        app_,
        host=settings.host,
        port=settings.port,
        log_config=None,  # easel's logging (easel.logs) is configured already
        access_log=False,  # easel.access writes it, with query strings masked
        ws_max_size=max(16 * 1024 * 1024, settings.max_body_bytes * 4),
        ws_ping_interval=settings.ws_ping_interval or None,  # finds half-open connections
        http=with_header_deadline(settings.header_timeout, settings.keep_alive_timeout),
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
    )
    server = _graceful_server(config)
    # uvicorn re-raises the signal it caught once it has shut down; with the default handler
    # that would end a clean SIGTERM shutdown with status -15 instead of 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    in_process = app_.state.services.worker
    if in_process is not None and in_process.alive():
        # An engine call outlived the grace period; its jobs are already handed back. Leaving
        # through interpreter shutdown would abort inside torch's threads, so leave at once.
        logging.shutdown()
        os._exit(0)


@app.command()
def worker(
    device: Annotated[
        str | None, typer.Option(help="Where the engine runs: cuda, cuda:N or cpu "
                                      "(default: EASEL_DEVICE, else cuda when present)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Jobs database and images (default: EASEL_DATA_DIR)")
    ] = None,
    log_level: LogLevel = None,
    log_json: LogJson = None,
    config: ConfigFile = None,
) -> None:
    """Run a worker on its own: it claims jobs from the same store as `easel serve --no-worker`
    (one worker per GPU). SIGTERM or Ctrl-C: the batch in flight finishes, the rest is handed
    back, exit 0."""
    import threading

    from easel.runtime.build import build_worker
    from easel.store.jobs import STARTUP_WAIT_SECONDS

    _use_config(config)
    settings = settings_from(data_dir=data_dir, device=device, log_level=log_level,
                             log_json=log_json)
    _configure_logs(settings)
    _writable_dir(settings.data_dir, "--data-dir")
    the_worker = build_worker(settings)
    the_worker.store.create(wait_seconds=STARTUP_WAIT_SECONDS)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    the_worker.start()
    serve_log.info("worker %s started on the job store %s", the_worker.owner,
                   _without_password(settings.database_url))
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, settings.host,
                          registry=the_worker.metrics.registry)
        serve_log.info("worker metrics at http://%s:%d/metrics", settings.host,
                       settings.worker_metrics_port)
    stop.wait()
    the_worker.stop(settings.shutdown_grace_seconds)
    if the_worker.alive():
        logging.shutdown()
        os._exit(0)  # an engine call outlived the grace; its jobs are already handed back


ServerURL = Annotated[str, typer.Option(envvar="EASEL_URL", help="The server's base URL")]
ServerKey = Annotated[
    str | None, typer.Option(envvar="EASEL_API_KEY", help="An API key, when the server needs one")
]


def _server_call(
    method: str, url: str, key: str | None, params: dict[str, str] | None = None
) -> dict[str, object]:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, url, headers=headers, params=params, timeout=30)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}", code=1)
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"message": response.text[:500]}}
    if response.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        fail(str(message or body), code=1)
    return dict(body)


def _print_job(job: dict[str, object]) -> None:
    table = Table(show_header=False)
    progress = job.get("progress")
    for name in ("id", "status", "dialect", "model", "prompt", "size", "images", "seeds",
                 "progress", "error", "backend", "created_at", "finished_at"):
        value = job.get(name)
        if name == "progress" and isinstance(progress, dict):
            value = f"step {progress.get('step')} of {progress.get('total')}"
        if name == "error" and isinstance(value, dict):
            value = f"{value.get('kind')}: {value.get('message')}"
        table.add_row(name, Text("" if value is None else str(value)))  # as written: no markup
    for output in job.get("outputs") or []:  # type: ignore[attr-defined]
        if isinstance(output, dict) and output.get("url"):
            table.add_row(f"image {output.get('index')}", Text(str(output["url"])))
    out.print(table)


STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow",
                "processing": "cyan", "queued": "white"}


@jobs_app.command("list")
def jobs_list(
    url: ServerURL = "http://127.0.0.1:8000",
    key: ServerKey = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first")] = 20,
    status: Annotated[
        str | None, typer.Option(help="Only these states, comma-separated "
                                      "(queued,processing,completed,failed,cancelled)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The jobs as JSON")] = False,
) -> None:
    """Your jobs on the server, newest first: state, progress, model and prompt."""
    params = {"limit": str(limit), **({"status": status} if status else {})}
    jobs = _server_call("GET", f"{url.rstrip('/')}/easel/jobs", key, params)["jobs"]
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    table = Table(title=f"jobs on {url}")
    for column in ("id", "status", "progress", "model", "size", "images", "created", "prompt"):
        table.add_column(column, no_wrap=column == "id",
                         overflow="fold" if column == "prompt" else "ellipsis")
    for job in jobs:  # type: ignore[attr-defined]
        progress = job["progress"]
        state = job["status"]
        prompt = job["prompt"][:60] + ("…" if len(job["prompt"]) > 60 else "")
        table.add_row(  # Text: a prompt is shown as written, never read as rich markup
            Text(job["id"]), Text(state, style=STATUS_STYLE.get(state, "white")),
            f"{progress['step']}/{progress['total']}", Text(job["model"]), job["size"],
            str(job["images"]), job["created_at"][:19].replace("T", " "), Text(prompt),
        )
    out.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job's id (a task or prediction id)")],
    url: ServerURL = "http://127.0.0.1:8000",
    key: ServerKey = None,
) -> None:
    """Show one job: its state, progress and error."""
    _print_job(_server_call("GET", f"{url.rstrip('/')}/easel/jobs/{job_id}", key))


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id (a task or prediction id)")],
    url: ServerURL = "http://127.0.0.1:8000",
    key: ServerKey = None,
) -> None:
    """Cancel a queued or running job; a running one stops within one denoising step."""
    job = _server_call("POST", f"{url.rstrip('/')}/easel/jobs/{job_id}/cancel", key)
    _print_job(job)


def _graceful_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's Server, told to stop the worker's claims the moment a signal arrives (not only
    once open connections have drained)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            services = getattr(getattr(self.config.app, "state", None), "services", None)
            if services is not None:
                services.begin_shutdown()
            super().handle_exit(sig, frame)

    return Server(config)


def _key_store(data_dir: Path | None = None) -> KeyStore:
    from easel.store import JobStore, KeyStore

    settings = settings_from(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.database_url)
    store.create()
    return KeyStore(store.engine)


def _has_keys(settings: Settings) -> bool:
    return bool(settings.api_keys) or _key_store(settings.data_dir).active_count() > 0


DataDir = Annotated[
    Path | None, typer.Option(help="Where the job store lives (default: EASEL_DATA_DIR)")
]


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label to recognise the key by")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    info, key = _key_store(data_dir).create(name)
    err.print(f"key {info.id} created; store it now, it cannot be shown again", markup=False)
    typer.echo(key)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List keys by id (never the keys themselves)."""
    for info in _key_store(data_dir).list():
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.created_at))
        state = "active" if info.revoked_at is None else "revoked"
        typer.echo(f"{info.id}\t{state}\t{created}\t{info.name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The id `easel keys list` shows")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key; requests with it are refused within a second."""
    if not _key_store(data_dir).revoke(key_id):
        fail(f"no active key {key_id!r}", code=1)
    typer.echo(f"key {key_id} revoked")


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


@webhooks_app.command("verify")
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
    """Check a delivery's signature; exit 0 when valid, 1 when not, 2 when the secret or a
    header is malformed."""
    from easel.services.delivery.signing import verify, verify_v3

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


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Print every setting's value and where it came from: `flag`, `EASEL_...`, the settings
    file, or `default`. Secrets are masked."""
    from easel.settings import SECRET_SETTINGS, config_file_path, read_settings_file

    settings = settings_from()
    path = config_file_path()  # settings_from has checked it already
    file_values = read_settings_file(path) if path else {}
    values = settings.model_dump(mode="json")
    for name in SECRET_SETTINGS:
        values[name] = "***" if values[name] else values[name]
    sources = {name: setting_source(name, {}, file_values, path) for name in values}
    if as_json:
        typer.echo(json.dumps({"settings_file": str(path) if path else None,
                               "settings": values, "sources": sources}, indent=2))
        return
    table = Table(title=f"easel settings (file: {path or 'none'})")
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for name, value in values.items():
        table.add_row(env_name(name), json.dumps(value) if not isinstance(value, str) else value,
                      sources[name])
    out.print(table)


@config_app.command("reference")
def config_reference() -> None:
    """Print the Markdown table of every setting (docs/operations.md's, generated)."""
    from easel.settings import reference_markdown

    typer.echo(reference_markdown(), nl=False)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
