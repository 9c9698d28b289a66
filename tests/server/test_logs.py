"""What a server logs, as an operator reads it: `--log-json` gives one JSON object a line for
the whole run (model loading with seconds, ready, each job's lifecycle, deliveries, the access
log), and no secret appears anywhere in it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from easel import logs
from tests.receiver import Receiver
from tests.server_harness import Server, inference

KEY = "plain-key-for-the-log-test-0123456789"
WEBHOOK_SECRET = "whsec_bG9nLXRlc3Qtc2VjcmV0LXZhbHVlLTEyMzQ1Ng=="
ENHANCER_KEY = "enhancer-key-never-logged-987654"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[str]:
    """The whole log of a server that served three dialects and delivered a webhook."""
    srv = Server(tmp_path_factory.mktemp("logs"),
                 command=["-m", "easel.cli", "serve", "--log-json"],
                 EASEL_API_KEYS=KEY, EASEL_WEBHOOK_SECRET=WEBHOOK_SECRET,
                 EASEL_PROMPT_ENHANCER_API_KEY=ENHANCER_KEY, EASEL_ALLOW_LOOPBACK_URLS=1)
    srv.start()
    bearer = {"Authorization": f"Bearer {KEY}"}
    try:
        task = inference(deliveryMethod="async", webhookURL=receiver.url("/hook?token=abc123"))
        assert srv.post([{"taskType": "authentication", "apiKey": KEY}, task]).status_code == 200
        google = httpx.get(f"{srv.url}/v1beta/models", params={"key": KEY}, timeout=30)
        assert google.status_code == 200
        openai = httpx.post(f"{srv.url}/v1/images/generations", headers=bearer, timeout=120,
                            json={"model": "imagen-4.0-fast-generate-001", "prompt": "a cat",
                                  "size": "64x64"})
        assert openai.status_code == 200, openai.text
        _wait_for(lambda: any(hit.path.startswith("/hook") for hit in receiver.hits))
        _wait_for(lambda: "delivered webhook" in srv.log.read_text())
    finally:
        srv.stop()
    yield srv.log.read_text()


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def records(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails on any line that is not JSON


def test_every_line_is_one_json_object(logged: str) -> None:
    found = records(logged)
    assert len(found) > 10
    assert all({"time", "level", "logger", "message"} <= set(r) for r in found)


def test_loading_ready_jobs_and_deliveries_are_logged_at_info(logged: str) -> None:
    found = records(logged)
    loaded = [r for r in found if r["logger"] == "easel.engine.pipelines"]
    assert loaded and loaded[0]["level"] == "INFO" and loaded[0]["seconds"] >= 0
    assert any(r["message"].startswith("ready: worker") for r in found)
    accepted = {r["job_id"]: r for r in found if " accepted: " in r["message"]}
    completed = {r["job_id"]: r for r in found if " completed: " in r["message"]}
    assert len(accepted) == 2 and set(accepted) == set(completed)
    assert {r["dialect"] for r in completed.values()} == {"runware", "openai"}
    assert all(r["images"] == 1 and r["seconds"] > 0 for r in completed.values())
    delivered = [r for r in found if r["message"].startswith("delivered webhook")]
    assert delivered and delivered[0]["host"] == "127.0.0.1" and delivered[0]["http_status"]
    assert "token=" not in delivered[0]["message"]  # the host only, never the URL


def test_the_access_log_masks_keys_in_query_strings(logged: str) -> None:
    access = [r for r in records(logged) if r["logger"] == "easel.access"]
    paths = {(r["method"], r["path"], r["status"]) for r in access}
    assert ("POST", "/v1/images/generations", 200) in paths
    google = next(r for r in access if r["path"] == "/v1beta/models")
    assert "key=***" in google["message"]


def test_no_secret_is_logged(logged: str) -> None:
    for secret in (KEY, WEBHOOK_SECRET, ENHANCER_KEY, "abc123"):
        assert secret not in logged


def test_the_mask_covers_each_kind_of_secret() -> None:
    mask = logs.MaskSecrets(["operator-plain-key-1"]).mask
    assert mask("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert mask("key easel_0123abcd_s3cr3t-Value") == "key ***"
    assert mask("secret whsec_QUJDRA==") == "secret ***"
    assert mask("https://b.s3/x.png?X-Amz-Signature=f00&X-Amz-Date=1") == (
        "https://b.s3/x.png?X-Amz-Signature=***&X-Amz-Date=1")
    assert mask("GET /v1beta/models?alt=json&key=AIza123") == "GET /v1beta/models?alt=json&key=***"
    assert mask("the key operator-plain-key-1 was used") == "the key *** was used"
    assert mask("store postgresql+psycopg://easel:hunter2pw@db:5432/easel") == (
        "store postgresql+psycopg://easel:***@db:5432/easel")
    assert mask("https://example.com:8443/x") == "https://example.com:8443/x"  # a port stays


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure() changes this process's loggers: put them back for the tests after."""
    names = ["", "easel", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restored_logging")
def test_text_logs_carry_the_same_records(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", json_lines=False, secrets=["operator-plain-key-1"])
    logging.getLogger("easel.worker").info("job %s completed with %s", "j1",
                                           "operator-plain-key-1")
    logging.getLogger("easel.worker").debug("not shown at info")
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO easel.worker: job j1 completed with ***")
    with pytest.raises(ValueError, match="log level must be one of"):
        logs.configure("loud")
