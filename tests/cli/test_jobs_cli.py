"""`easel jobs` facing what is not a job: an id no job can have is refused before any request,
and a redirect (a proxy's, or a route easel answers for another path) is an error, never an
empty job printed with exit 0. The commands against a real server are tested in
tests/server/test_easel_api.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.receiver import Receiver
from typer.testing import CliRunner

from easel.cli import app


@pytest.fixture
def redirecting() -> Iterator[Receiver]:
    """A server that answers `easel jobs`' requests with a redirect."""
    paths = ("/easel/jobs", "/easel/jobs/job-1", "/easel/jobs/job-1/cancel")
    receiver = Receiver(scripts={path: [307] for path in paths}).start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("job_id", ["", ".", ".."])
@pytest.mark.parametrize("command", ["show", "cancel"])
def test_an_id_no_job_can_have_is_refused_before_any_request(
    redirecting: Receiver, command: str, job_id: str
) -> None:
    result = CliRunner().invoke(app, ["jobs", command, job_id, "--url", redirecting.url("")])
    assert result.exit_code == 1, result.output
    assert f"error: {job_id!r} is not a job id" in result.output
    assert redirecting.hits == []


@pytest.mark.parametrize("args", [["show", "job-1"], ["cancel", "job-1"], ["list"]])
def test_a_redirect_is_an_error_not_an_empty_job(redirecting: Receiver, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["jobs", *args, "--url", redirecting.url("")])
    assert result.exit_code == 1, result.output
    assert "answered 307 (a redirect to" in result.output and "--url" in result.output
    assert len(redirecting.hits) == 1
