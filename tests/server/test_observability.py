"""What an operator watches, on a real server: /metrics (process metrics, no `_created`
series, the loaded models, the stand-ins), /easel/info (device, loaded models), a separate
worker's own /metrics, and the Grafana dashboard in deploy/ reading only series that exist."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server_harness import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "easel-dashboard.json"


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    return response.text


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def test_metrics_have_process_series_models_and_stand_ins_and_no_created(server: Server
                                                                         ) -> None:
    text = scrape(f"{server.url}/metrics")
    found = samples(text)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "python_info", "python_gc_collections_total"):
        assert name in found, name
    assert not re.search(r"^\w+_created[{ ]", text, re.M)  # twice the series for nothing
    (build,) = found["easel_build_info"]
    assert build[0]["version"]
    preloaded = {labels["source"]: value for labels, value in found["easel_model_loaded"]}
    # google:2@3 (Fast) is preloaded by default; with no real weights easel-mini serves it
    assert preloaded == {"easel/mini": 1.0}
    assert all(labels["device"] == "cpu" for labels, _ in found["easel_model_loaded"])
    stand_ins = {labels["tier"]: (labels["stand_in"], value)
                 for labels, value in found["easel_tier_stand_in"]}
    assert stand_ins["fast"] == ("easel/mini", 1.0)
    assert set(stand_ins) == {"fast", "standard", "ultra", "mini", "upscale"}
    assert stand_ins["mini"][1] == 0.0  # easel-mini's own tier runs on its shipped weights
    assert "# TYPE easel_accelerator_memory_bytes gauge" in text  # no samples on the CPU
    assert "easel_accelerator_memory_bytes" not in found


def test_info_names_the_device_and_the_loaded_models(server: Server) -> None:
    info = httpx.get(f"{server.url}/easel/info", timeout=30).json()
    assert info["engine"] == {"device": "cpu", "loaded_models": ["easel/mini"],
                              "memory_bytes": {}, "loaded_loras": {}}
    assert set(info["stand_ins_serving"]) == {"fast", "standard", "ultra", "upscale"}
    standard = next(t for t in info["tiers"] if t["tier"] == "standard")
    assert standard["license"]["id"] and standard["stand_in"] == "easel/mini"


def test_a_worker_process_serves_its_own_metrics(make_server: object, tmp_path: Path) -> None:
    srv = make_server("api")  # type: ignore[operator]
    srv.command = ["-m", "tests.serve", "serve", "--no-worker"]
    srv.start(wait_ready=False)
    port = free_port()
    log = tmp_path / "worker.log"
    worker = srv.worker(log, EASEL_WORKER_METRICS_PORT=port)
    try:
        deadline = time.monotonic() + 120
        loaded: list[tuple[dict[str, str], float]] = []
        while not loaded:
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                loaded = samples(scrape(f"http://127.0.0.1:{port}/metrics")).get(
                    "easel_model_loaded", [])
            time.sleep(0.2)
        assert [labels["source"] for labels, _ in loaded] == ["easel/mini"]
    finally:
        worker.terminate()
        assert worker.wait(60) == 0


def test_the_grafana_dashboard_reads_only_series_easel_exports(server: Server) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 12
    exported = set(samples(scrape(f"{server.url}/metrics")))
    # histograms and counters are named by their series; families with no samples yet
    # (accelerator memory on a CPU) are declared by their TYPE line
    declared = set(re.findall(r"^# TYPE (\w+) ", scrape(f"{server.url}/metrics"), re.M))
    functions = {"sum", "by", "rate", "histogram_quantile", "le", "label_values"}
    for expr in exprs:
        names = {n for n in re.findall(r"\b([a-z_]+)(?=[{(\[])", expr)} - functions
        assert names, expr
        for name in names:
            assert name in exported or name in declared, f"{name} in {expr!r}"
    templating = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job"} <= templating
