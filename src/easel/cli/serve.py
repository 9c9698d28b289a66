"""`easel serve` (the API, and by default an in-process worker) and `easel worker` (the engine
alone, on the same store): their flags; the process itself is easel.runtime's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from easel.cli.common import (
    ConfigFile,
    LogJson,
    LogLevel,
    configure_logs,
    fail,
    settings_from,
    use_config,
    writable_dir,
)

ProcessDataDir = Annotated[
    Path | None, typer.Option(help="Jobs database and images (default: EASEL_DATA_DIR)")
]


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: EASEL_HOST, 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: EASEL_PORT, 8000)")] = None,
    data_dir: ProcessDataDir = None,
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
    from easel.runtime import serve as runtime

    use_config(config)
    settings = settings_from(host=host, port=port, data_dir=data_dir,
                             run_worker=worker, commercial_only=commercial_only,
                             strict=strict, log_level=log_level, log_json=log_json)
    configure_logs(settings)
    writable_dir(settings.data_dir, "--data-dir")
    try:
        runtime.check_can_serve(settings, insecure_no_auth)
    except runtime.StartRefused as exc:
        fail(str(exc))
    runtime.serve(settings)


def worker(
    device: Annotated[
        str | None, typer.Option(help="Where the engine runs: cuda, cuda:N or cpu "
                                      "(default: EASEL_DEVICE, else cuda when present)")
    ] = None,
    data_dir: ProcessDataDir = None,
    log_level: LogLevel = None,
    log_json: LogJson = None,
    config: ConfigFile = None,
) -> None:
    """Run a worker on its own: it claims jobs from the same store as `easel serve --no-worker`
    (one worker per GPU). SIGTERM or Ctrl-C: the batch in flight finishes, the rest is handed
    back, exit 0."""
    from easel.runtime.build import start_problem
    from easel.runtime.work import work

    use_config(config)
    settings = settings_from(data_dir=data_dir, device=device, log_level=log_level,
                             log_json=log_json)
    configure_logs(settings)
    writable_dir(settings.data_dir, "--data-dir")
    refused = start_problem(settings)
    if refused is not None:
        fail(refused)
    work(settings)
