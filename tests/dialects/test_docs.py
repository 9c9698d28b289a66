"""Jobs from every dialect land in the one job store and in /metrics the same way. (The dialect
pages' examples run as printed in tests/docs/test_examples.py.)"""

from __future__ import annotations

import httpx

from tests.dialects.conftest import KEY
from tests.server_harness import Server
from tests.wire import Google, OpenAI, WaveSpeed


def test_every_dialect_is_in_the_store_and_metrics(live: Server) -> None:
    with httpx.Client(base_url=live.url, timeout=120) as client:
        for wire in (WaveSpeed(), OpenAI(), Google()):  # a job of its own in each dialect
            reply = wire.generate(KEY).send(client)
            assert reply.status_code == 200, reply.text
    stored = {row[0] for row in live.db("SELECT DISTINCT dialect FROM jobs")}
    assert {"wavespeed", "openai", "google"} <= stored
    metrics = httpx.get(f"{live.url}/metrics").text
    for dialect in ("wavespeed", "openai", "google"):
        assert f'easel_jobs_submitted_total{{dialect="{dialect}"}}' in metrics
