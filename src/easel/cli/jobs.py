"""`easel jobs`: list, show and cancel your jobs on a running server (a client of /easel)."""

from __future__ import annotations

import json
import time
from typing import Annotated
from urllib.parse import quote

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from easel.cli.common import err, fail, out, settings_from
from easel.logs import visible

app = typer.Typer(no_args_is_help=True, help="Jobs on a running server.")

ServerURL = Annotated[str | None, typer.Option(
    envvar="EASEL_URL", show_default=False,
    help="The server's base URL; default: where `easel serve` listens with the same settings "
         "(EASEL_HOST, EASEL_PORT, the settings file)")]
ServerKey = Annotated[
    str | None, typer.Option(envvar="EASEL_API_KEY", help="An API key, when the server needs one")
]


def server_url(given: str | None) -> str:
    """The URL given (--url, EASEL_URL), else where `easel serve` listens with this machine's
    settings: the CLI finds the server the way the server found its port."""
    return (given or settings_from().local_url).rstrip("/")


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
    # easel's routes never redirect a good request: a redirect is a proxy's, or a route
    # easel answers for another path (an empty id's `/easel/jobs/`), never the answer asked for.
    if 300 <= response.status_code < 400:
        location = response.headers.get("location", "")
        fail(f"{url} answered {response.status_code} (a redirect to {location!r}), not "
             "easel's answer: check --url (EASEL_URL)", code=1)
    if response.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        fail(str(message or body), code=1)
    return dict(body)


def queue_line(queue: dict[str, object]) -> str:
    """A queued job's place, as `easel jobs show` prints it."""
    ahead = queue.get("ahead")
    place = "next" if ahead == 0 else f"{ahead} job{'' if ahead == 1 else 's'} ahead"
    wait = queue.get("wait_seconds")
    return place if not isinstance(wait, int | float) else f"{place}, about {wait:.0f} s"


def _print_job(job: dict[str, object]) -> None:
    """The job as a table of its fields (values wrap, never cut), then each image's URL on a
    line of its own, whole, to be copied."""
    table = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    progress = job.get("progress")
    for name in ("id", "status", "dialect", "model", "prompt", "size", "images", "seeds",
                 "progress", "queue", "error", "backend", "created_at", "finished_at"):
        value = job.get(name)
        if name == "progress" and isinstance(progress, dict):
            value = f"step {progress.get('step')} of {progress.get('total')}"
        if name == "queue":
            if not isinstance(value, dict):
                continue
            value = queue_line(value)
        if name == "error" and isinstance(value, dict):
            value = f"{value.get('kind')}: {value.get('message')}"
        # As written (no markup), but for what a terminal would act on: shown escaped.
        table.add_row(name, Text("" if value is None else visible(str(value))))
    out.print(table)
    for output in job.get("outputs") or []:  # type: ignore[attr-defined]
        if isinstance(output, dict) and output.get("url"):
            typer.echo(f"image {output.get('index')}: {visible(str(output['url']))}")


def _path(job_id: str) -> str:
    """The id as one path segment: any character in it (a slash, a `?`, a control character a
    URL may not hold) is the id's, not the URL's. An empty, `.` or `..` id is no job's, and as
    a segment it would name another route (`/easel/jobs/` once the dots are folded)."""
    if job_id in ("", ".", ".."):
        fail(f"{job_id!r} is not a job id", code=1)
    return quote(job_id, safe="")


TERMINAL = ("completed", "failed", "cancelled")
CANCEL_WAIT_SECONDS = 30.0

STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow",
                "processing": "cyan", "queued": "white"}


@app.command("list")
def jobs_list(
    url: ServerURL = None,
    key: ServerKey = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first")] = 20,
    status: Annotated[
        str | None, typer.Option(help="Only these states, comma-separated "
                                      "(queued,processing,completed,failed,cancelled)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The jobs as JSON")] = False,
) -> None:
    """Your jobs on the server, newest first: id, status (steps while running), created
    and prompt."""
    params = {"limit": str(limit), **({"status": status} if status else {})}
    url = server_url(url)
    jobs = _server_call("GET", f"{url}/easel/jobs", key, params)["jobs"]
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    # Fits 80 columns: the id (what a user copies) and the state are never cut; the prompt
    # wraps. The model, size and images are in `easel jobs show ID`.
    out.print(f"jobs on {url}", markup=False)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    for column in ("id", "status", "created", "prompt"):
        table.add_column(column, no_wrap=column != "prompt",
                         overflow="fold" if column == "prompt" else "ellipsis")
    for job in jobs:  # type: ignore[attr-defined]
        progress, state = job["progress"], job["status"]
        shown = f"{state} {progress['step']}/{progress['total']}" if state == "processing" \
            else state
        prompt = job["prompt"][:60] + ("…" if len(job["prompt"]) > 60 else "")
        table.add_row(  # Text: a prompt is never read as rich markup; visible: nor by the tty
            Text(visible(job["id"])), Text(shown, style=STATUS_STYLE.get(state, "white")),
            job["created_at"][5:16].replace("T", " "), Text(visible(prompt)),
        )
    out.print(table)


@app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job's id (a task or prediction id)")],
    url: ServerURL = None,
    key: ServerKey = None,
) -> None:
    """Show one job: its state, progress and error."""
    _print_job(_server_call("GET", f"{server_url(url)}/easel/jobs/{_path(job_id)}", key))


@app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id (a task or prediction id)")],
    url: ServerURL = None,
    key: ServerKey = None,
) -> None:
    """Cancel a queued or running job; a running one stops within one denoising step, which
    this waits for (up to 30 s), so what it prints is the job as the cancel left it."""
    base = server_url(url)
    job = _server_call("POST", f"{base}/easel/jobs/{_path(job_id)}/cancel", key)
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while job.get("status") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)  # polling a server from a command line: no event to wait on here
        job = _server_call("GET", f"{base}/easel/jobs/{_path(job_id)}", key)
    _print_job(job)
    if job.get("status") not in TERMINAL:
        err.print("the job is still stopping; `easel jobs show` tells when it has",
                  markup=False)
