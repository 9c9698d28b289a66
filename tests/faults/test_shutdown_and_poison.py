"""Faults: SIGTERM mid-job (finish or hand back, exit 0, nothing lost) and a poison job that
kills its worker every time (bounded attempts, then `worker_lost`, other jobs complete)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest

from tests.receiver import Receiver
from tests.server_harness import Server, inference, poll_until_done


def wait_processing(srv: Server, task_uuid: str) -> None:
    deadline = time.monotonic() + 60
    while srv.db("SELECT status FROM jobs WHERE task_id = ?", task_uuid) != [("processing",)]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize(("grace", "after_stop"), [(60, "completed"), (0.2, "queued")])
def test_sigterm_mid_job_exits_0_and_the_job_completes_once(
    make_server: Callable[..., Server], grace: float, after_stop: str
) -> None:
    """A long grace lets the batch finish; a short one hands it back without spending an
    attempt. Either way the restart ends with one completed job, run to completion once."""
    srv = make_server(small=False, step_seconds=0.1, EASEL_SHUTDOWN_GRACE_SECONDS=grace)
    srv.start()
    task = inference(width=1024, height=1024, numberResults=4, deliveryMethod="async")
    srv.post([task])
    wait_processing(srv, task["taskUUID"])
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(120) == 0
    status, attempts = srv.db("SELECT status, attempts FROM jobs")[0]
    assert status == after_stop and attempts == (1 if after_stop == "completed" else 0)
    (job_id,) = [row[0] for row in srv.db("SELECT id FROM jobs")]
    log = srv.log.read_text()  # the log says the shutdown began, and names a job handed back
    assert "shutting down: " in log
    assert (f"job(s) {job_id} did not finish within the grace period: handed back to the "
            "queue" in log) == (after_stop == "queued")

    srv.start()
    items = poll_until_done(srv, task["taskUUID"])
    assert len(items) == 4
    assert srv.db("SELECT status, attempts FROM jobs") == [("completed", 1)]


def test_a_poison_job_is_failed_after_bounded_attempts(make_server: Callable[..., Server]) -> None:
    receiver = Receiver().start()
    srv = make_server(engine="crash:POISON-MARKER", step_seconds=0.5,
                      EASEL_MAX_ATTEMPTS=2, EASEL_LEASE_SECONDS=1.5, EASEL_ALLOW_LOOPBACK_URLS=1)
    try:
        poison = inference(positivePrompt="POISON-MARKER fox", deliveryMethod="async",
                           webhookURL=receiver.url("/poison"))
        others = [inference(positivePrompt=f"fox {i}", deliveryMethod="async") for i in range(3)]
        srv.start(wait_ready=False)
        srv.post([poison, *others])
        restarts = 0
        deadline = time.monotonic() + 180
        poison_sql = "SELECT status FROM jobs WHERE task_id = ?"
        while srv.db(poison_sql, poison["taskUUID"]) != [("failed",)]:
            assert time.monotonic() < deadline
            assert srv.proc is not None
            if srv.proc.poll() is not None:  # the supervisor's job: start it again
                assert srv.proc.returncode == 86
                restarts += 1
                srv.start(wait_ready=False, wait_live=False)  # it may die again at once
            time.sleep(0.1)
        assert restarts == 2  # attempted exactly max_attempts times
        code, message = srv.db("SELECT error_code, error_message FROM jobs WHERE task_id = ?",
                               poison["taskUUID"])[0]
        assert code == "worker_lost" and "2 times" in message
        # The last start may mark the poison job failed (recovering its lease) before it
        # listens: wait for it to answer before asking it about the others.
        srv.wait("/livez", 60)
        for task in others:
            assert len(poll_until_done(srv, task["taskUUID"])) == 1
        (hit,) = receiver.wait_for("/poison", 1)
        (error,) = json.loads(hit.body)["errors"]
        assert error["taskUUID"] == poison["taskUUID"]
        assert srv.post([{"taskType": "getResponse", "taskUUID": poison["taskUUID"]}]
                        ).json()["errors"][0]["taskUUID"] == poison["taskUUID"]
    finally:
        receiver.stop()
