"""bench/api_vs_engine.py runs on the CPU with a tiny family: the GPU session's `api` step is
tested here, so that a change to the server's set-up or its metrics does not first show on a
lent GPU. It runs as its own process, as there: it serves with `easel serve`'s uvicorn set-up
and stops itself with SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api_vs_engine.py"


def test_the_api_bench_serves_the_adopted_pipeline_with_google_finishing(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--arch", "tiny-flux2", "--size", "256", "--batch", "2",
         "--clients", "2", "--images", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["arch"], result["size"], result["steps"]) == ("tiny-flux2", 256, 4)
    assert result["engine_alone_images_per_second"] > 0 and result["api_images_per_second"] > 0
    # The server's metrics over the timed part: its two images went through the engine and
    # through finishing (watermark and content check on: Google's defaults).
    assert 1 <= result["images_per_engine_call"] <= 2
    assert 0 < result["engine_busy_share"] <= 1
    assert result["finishing_seconds_per_image"] > 0 and result["finishing_threads"] >= 1
