"""Webhooks and uploadEndpoint end to end: a real server, a loopback receiver, the durable outbox.

The retry clock is compressed (EASEL_WEBHOOK_RETRY_DELAYS) and loopback is allowed explicitly
(EASEL_ALLOW_LOOPBACK_URLS), as the tests' receivers need."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.receiver import Receiver
from tests.server_harness import Server, free_port, inference, poll_until_done

from easel.services.delivery.signing import new_secret, verify

SECRET = new_secret()
FAST = {"EASEL_ALLOW_LOOPBACK_URLS": 1, "EASEL_WEBHOOK_SECRET": SECRET,
        "EASEL_WEBHOOK_RETRY_DELAYS": "0.3,0.6,1.2", "EASEL_WEBHOOK_TIMEOUT": 1,
        "EASEL_UPLOAD_TIMEOUT": 1}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("hooks"), **FAST).start()
    yield server
    server.stop()


def deliveries(srv: Server, job_id: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{srv.url}/easel/jobs/{job_id}/deliveries").json()
    return list(body["deliveries"])


def settled(srv: Server, job_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The job's deliveries once none is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = deliveries(srv, job_id)
        if len(rows) == count and all(r["status"] != "pending" for r in rows):
            return rows
        time.sleep(0.1)
    raise TimeoutError(deliveries(srv, job_id))


def test_one_signed_post_per_image_in_the_sync_envelope(srv: Server, receiver: Receiver) -> None:
    task = inference(numberResults=2, deliveryMethod="async", webhookURL=receiver.url("/ok"))
    assert srv.post([task]).status_code == 200
    items = poll_until_done(srv, task["taskUUID"])
    hits = receiver.wait_for("/ok", 2)
    assert len(hits) == 2
    posted = [json.loads(hit.body) for hit in hits]
    assert {p["data"][0]["imageUUID"] for p in posted} == {i["imageUUID"] for i in items}
    for payload, hit in zip(posted, hits, strict=True):
        (item,) = payload["data"]
        assert item["taskUUID"] == task["taskUUID"] and item["imageURL"].startswith("http")
        assert "status" not in item  # the sync reply's item, not the poll's
        headers = {k.lower(): v for k, v in hit.headers.items()}
        assert verify(SECRET, hit.body, headers) == payload
        with pytest.raises(ValueError):
            verify(SECRET, hit.body.replace(b"taskUUID", b"taskUUIX"), headers)
    assert len({h.headers["webhook-id"] for h in hits}) == 2  # one id per (job, image)
    assert [d["status"] for d in settled(srv, task["taskUUID"], 2)] == ["delivered"] * 2


def test_retries_keep_the_id_grow_the_delay_and_stop_on_success(
    srv: Server, receiver: Receiver
) -> None:
    receiver.scripts["/flaky"] = [500, 500, 200]
    task = inference(deliveryMethod="async", webhookURL=receiver.url("/flaky"))
    srv.post([task])
    (row,) = settled(srv, task["taskUUID"], 1)
    hits = receiver.at("/flaky")
    assert [h.status for h in hits] == [500, 500, 200]
    assert row["status"] == "delivered" and row["attempts"] == 3
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert len({h.body for h in hits}) == 1  # the same bytes every time
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    # Each retry waited at least its own delay, 0.3 s then 0.6 s (jitter only adds). Not
    # gaps[0] < gaps[1]: a loaded machine can stretch the first past the second.
    assert gaps[0] > 0.29 and gaps[1] > 0.59


def test_410_stops_at_once(srv: Server, receiver: Receiver) -> None:
    receiver.scripts["/gone"] = [410]
    task = inference(deliveryMethod="async", webhookURL=receiver.url("/gone"))
    srv.post([task])
    (row,) = settled(srv, task["taskUUID"], 1)
    assert row["status"] == "failed" and row["attempts"] == 1 and row["lastStatus"] == 410
    time.sleep(0.8)
    assert len(receiver.at("/gone")) == 1


def test_redirects_are_failures_and_never_followed(srv: Server, receiver: Receiver) -> None:
    receiver.scripts["/moved"] = [302]
    task = inference(deliveryMethod="async", webhookURL=receiver.url("/moved"))
    srv.post([task])
    (row,) = settled(srv, task["taskUUID"], 1)
    assert row["status"] == "failed" and row["attempts"] == 4 and row["lastStatus"] == 302
    assert receiver.at("/target") == []
    # Polling stays the source of truth: the result is there, the failure is reported.
    body = srv.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()
    (item,) = body["data"]
    assert item["status"] == "success" and "302" in item["webhookError"]
    assert httpx.get(item["imageURL"]).status_code == 200


def test_a_hanging_receiver_is_cut_off_at_the_timeout(srv: Server, receiver: Receiver) -> None:
    receiver.scripts["/slow"] = [200]
    receiver.hang["/slow"] = 3.0
    task = inference(deliveryMethod="async", webhookURL=receiver.url("/slow"))
    srv.post([task])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = deliveries(srv, task["taskUUID"])
        if rows and rows[0]["attempts"] >= 1:
            break
        time.sleep(0.1)
    assert "timed out after 1s" in rows[0]["lastError"]


def test_upload_endpoint_gets_the_raw_bytes_and_only_our_headers(
    srv: Server, receiver: Receiver
) -> None:
    task = inference(deliveryMethod="async", outputFormat="PNG",
                     uploadEndpoint=receiver.url("/bucket/key.png?X-Amz-Signature=abc"))
    srv.post([task])
    (item,) = poll_until_done(srv, task["taskUUID"])
    (hit,) = receiver.wait_for("/bucket/key.png", 1)
    assert hit.method == "PUT"
    assert hit.body == httpx.get(item["imageURL"]).content
    headers = {k.lower(): v for k, v in hit.headers.items()}
    assert headers["content-type"] == "image/png"
    assert set(headers) <= {"host", "content-type", "content-length", "user-agent", "accept",
                            "accept-encoding", "connection"}


def test_a_final_upload_failure_is_in_the_task_result(srv: Server, receiver: Receiver) -> None:
    receiver.scripts["/denied"] = [403]
    task = inference(deliveryMethod="async", uploadEndpoint=receiver.url("/denied"))
    srv.post([task])
    settled(srv, task["taskUUID"], 1)
    body = srv.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()
    (item,) = body["data"]
    assert item["status"] == "success" and "403" in item["uploadEndpointError"]


def test_wavespeed_posts_a_refused_task_to_its_webhook(srv: Server, receiver: Receiver) -> None:
    """WaveSpeed POSTs `data` on failed: a request refused at submission (a failed task with an
    rf- id) reaches a webhook-driven client too, signed, retried, with its resolved input."""
    receiver.scripts["/refused"] = [500, 200]
    body = {"prompt": "a pear", "num_images": 9, "webhook_url": receiver.url("/refused")}
    reply = httpx.post(f"{srv.url}/api/v3/google/imagen4-fast", json=body).json()["data"]
    assert (reply["status"], reply["code"]) == ("failed", 1401)
    first, second = receiver.wait_for("/refused", 2)
    assert first.body == second.body and first.headers["webhook-id"] == second.headers[
        "webhook-id"]
    data = json.loads(second.body)
    assert data == reply and data["input"]["num_images"] == 9
    assert data["input"]["aspect_ratio"] == "1:1" and "webhook_url" not in data["input"]
    secret = httpx.get(f"{srv.url}/api/v3/webhook/secret").json()["data"]["secret"]
    headers = {k.lower(): v for k, v in second.headers.items()}
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + second.body
    expected = hmac.new(secret.removeprefix("whsec_").encode(), signed, hashlib.sha256)
    assert headers["webhook-signature"] == f"v3,{expected.hexdigest()}"
    polled = httpx.get(reply["urls"]["get"]).json()["data"]
    assert polled["input"] == reply["input"]  # the id carries the input as well


def test_wavespeed_posts_the_data_object(
    srv: Server, receiver: Receiver, tmp_path: Path
) -> None:
    reply = httpx.post(f"{srv.url}/api/v3/google/imagen4-fast",
                       params={"webhook": receiver.url("/ws")}, json={"prompt": "a pear"}).json()
    (hit,) = receiver.wait_for("/ws", 1)
    data = json.loads(hit.body)
    assert data["id"] == reply["data"]["id"] and data["status"] == "completed"
    assert len(data["outputs"]) == 1 and data["code"] == 0
    # Signed as WaveSpeed signs, verified as WaveSpeed's docs tell a receiver to verify.
    secret = httpx.get(f"{srv.url}/api/v3/webhook/secret").json()["data"]["secret"]
    headers = {k.lower(): v for k, v in hit.headers.items()}
    version, _, signature = headers["webhook-signature"].partition(",")
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + hit.body
    expected = hmac.new(secret.removeprefix("whsec_").encode(), signed, hashlib.sha256)
    assert version == "v3" and hmac.compare_digest(signature, expected.hexdigest())
    with pytest.raises(ValueError):  # not Standard Webhooks: a v1 verifier rejects it
        verify(SECRET, hit.body, headers)
    from typer.testing import CliRunner

    from easel.cli import app

    body_file = tmp_path / "body"
    body_file.write_bytes(hit.body)
    args = ["webhooks", "verify", "--scheme", "wavespeed", "--secret", secret,
            "--body-file", str(body_file)]
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        args += ["--header", f"{name}: {headers[name]}"]
    assert CliRunner().invoke(app, args).exit_code == 0
    from easel.api.dialects.wavespeed.translate import caller_secret

    assert caller_secret("root", "key:a") != caller_secret("root", "key:b")  # one per caller
    body_file.write_bytes(hit.body + b" ")
    assert CliRunner().invoke(app, args).exit_code == 1


def test_pending_deliveries_survive_a_restart(make_server: Callable[..., Server]) -> None:
    port = free_port()  # nothing listens yet: the first attempts fail
    env = {**FAST, "EASEL_WEBHOOK_RETRY_DELAYS": "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5"}
    srv = make_server(**env).start()
    task = inference(deliveryMethod="async", webhookURL=f"http://127.0.0.1:{port}/late")
    srv.post([task])
    poll_until_done(srv, task["taskUUID"])
    deadline = time.monotonic() + 20
    while not deliveries(srv, task["taskUUID"]) or deliveries(srv, task["taskUUID"])[0][
            "attempts"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    srv.kill()
    late = Receiver(port=port).start()
    try:
        srv.start()
        (hit,) = late.wait_for("/late", 1)
        (row,) = settled(srv, task["taskUUID"], 1)
        assert row["status"] == "delivered" and row["id"] == hit.headers["webhook-id"]
        time.sleep(1)
        assert len(late.at("/late")) == 1
    finally:
        late.stop()


def test_verify_command_checks_a_signature(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from easel.cli import app
    from easel.services.delivery.signing import signed_headers

    body = b'{"data":[]}'
    headers = signed_headers(SECRET, "msg_1", body)
    (tmp_path / "body").write_bytes(body)
    args = ["webhooks", "verify", "--secret", SECRET, "--body-file", str(tmp_path / "body")]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (tmp_path / "body").write_bytes(body + b" ")
    assert CliRunner().invoke(app, args).exit_code == 1


def test_metrics_count_deliveries_by_state(srv: Server, receiver: Receiver) -> None:
    receiver.scripts["/gone-again"] = [410]
    ok = inference(deliveryMethod="async", webhookURL=receiver.url("/metrics-ok"))
    gone = inference(deliveryMethod="async", webhookURL=receiver.url("/gone-again"))
    srv.post([ok, gone])
    settled(srv, ok["taskUUID"], 1)
    settled(srv, gone["taskUUID"], 1)
    text = httpx.get(srv.url + "/metrics").text
    counts = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines() if line.startswith("easel_deliveries{")
    }
    delivered, failed = srv.db("SELECT "
                               "SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), "
                               "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) "
                               "FROM deliveries")[0]
    assert counts["delivered"] == delivered >= 1
    assert counts["failed"] == failed >= 1
