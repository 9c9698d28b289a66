"""Soak: steady load for minutes against a real server whose webhook receiver fails a third of
the time. Checks afterwards, from the store and the receiver:

- every acknowledged job is terminal (none lost, none stuck);
- every webhook is delivered or recorded as failed (none pending), and no delivery id was
  acknowledged (2xx) twice (no duplicates);
- the server's RSS is flat (last quarter's median vs. the second quarter's, after warm-up).

    .venv/bin/python -m bench.soak --seconds 240 --rate 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
from tests.receiver import Receiver
from tests.server_harness import Server


def task(hook: str) -> dict[str, Any]:
    return {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": "google:2@3",
            "positivePrompt": "a red fox in snow", "width": 64, "height": 64,
            "numberResults": 1, "deliveryMethod": "async", "webhookURL": hook}


def run(seconds: float, rate: float, drain: float) -> dict[str, Any]:
    receiver = Receiver(fail_ratio=1 / 3).start()
    srv = Server(Path(tempfile.mkdtemp(prefix="easel-soak-")), engine="tiny",
                 EASEL_ALLOW_LOOPBACK_URLS=1,
                 EASEL_WEBHOOK_RETRY_DELAYS="0.5,1,2,4,8", EASEL_WEBHOOK_TIMEOUT=5,
                 EASEL_RATE_LIMIT_PER_SECOND=0).start()
    assert srv.proc is not None
    proc = psutil.Process(srv.proc.pid)
    acked: list[str] = []
    refused = 0
    rss: list[float] = []
    started = time.monotonic()
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        while (elapsed := time.monotonic() - started) < seconds:
            response = http.post("/v1", json=[task(receiver.url("/hook"))])
            body = response.json()
            if response.status_code == 200 and "data" in body:
                acked.append(body["data"][0]["taskUUID"])
            else:
                refused += 1
            if len(acked) % max(int(rate), 1) == 0:
                rss.append(proc.memory_info().rss / 2**20)
            time.sleep(max(0.0, (len(acked) + refused) / rate - elapsed))
    load_seconds = time.monotonic() - started
    outcome = _drain(srv, acked, drain)
    srv.stop()
    receiver.stop()
    ok = Counter(h.headers.get("webhook-id") for h in receiver.hits if 200 <= h.status < 300)
    quarter = max(len(rss) // 4, 1)
    return {
        "seconds": round(load_seconds, 1), "rate_per_s": rate, "acknowledged": len(acked),
        "refused": refused, **outcome,
        "webhook_posts": len(receiver.hits),
        "webhook_posts_failed_by_receiver": sum(1 for h in receiver.hits if h.status >= 300),
        "duplicate_acknowledged_deliveries": sum(1 for n in ok.values() if n > 1),
        "rss_mib_q2_median": round(statistics.median(rss[quarter:2 * quarter]), 1),
        "rss_mib_q4_median": round(statistics.median(rss[-quarter:]), 1),
        "rss_mib_max": round(max(rss), 1),
    }


def _drain(srv: Server, acked: list[str], timeout: float) -> dict[str, Any]:
    """Wait until jobs are terminal and no delivery is pending; the store's counts then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_jobs = srv.db("SELECT count(*) FROM jobs WHERE status NOT IN "
                           "('completed','failed')")[0][0]
        pending = srv.db("SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0]
        if open_jobs == 0 and pending == 0:
            break
        time.sleep(0.5)
    jobs = dict(srv.db("SELECT status, count(*) FROM jobs GROUP BY status"))
    deliveries = dict(srv.db("SELECT status, count(*) FROM deliveries GROUP BY status"))
    stored = {row[0] for row in srv.db("SELECT task_id FROM jobs")}
    return {"jobs": jobs, "deliveries": deliveries,
            "lost": sum(1 for job_id in acked if job_id not in stored),
            "deliveries_per_job": srv.db(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM deliveries GROUP BY job_id)")[0][0]}


def verdict(r: dict[str, Any]) -> list[str]:
    problems = []
    if r["lost"] or r["jobs"].get("completed", 0) != r["acknowledged"]:
        problems.append("not every acknowledged job completed")
    if r["deliveries"].get("pending"):
        problems.append("deliveries still pending")
    if sum(r["deliveries"].values()) != r["acknowledged"] or r["deliveries_per_job"] != 1:
        problems.append("not exactly one webhook per job")
    if r["duplicate_acknowledged_deliveries"]:
        problems.append("a delivery was acknowledged twice")
    if r["rss_mib_q4_median"] > r["rss_mib_q2_median"] * 1.10 + 10:
        problems.append("RSS grew")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--rate", type=float, default=4.0, help="submissions per second")
    parser.add_argument("--drain", type=float, default=120)
    args = parser.parse_args()
    result = run(args.seconds, args.rate, args.drain)
    problems = verdict(result)
    print(json.dumps({**result, "problems": problems}, indent=2))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
