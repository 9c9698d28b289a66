"""Each dialect's docs page carries a runnable client example; run it against the live server.
Also: jobs from every dialect land in the one job store and in /metrics the same way."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.dialects.conftest import KEY, ROOT
from tests.server_harness import Server
from tests.wire import Google, OpenAI, WaveSpeed

PAGES = {"wavespeed": "wavespeed", "openai": "openai", "google": "google-genai"}


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def examples() -> list[tuple[str, str, str]]:
    """(page, sdk venv, code) for every python block; a block whose first line is
    `# sdk: NAME` runs in that SDK's venv instead of the page's."""
    out = []
    for page, sdk in PAGES.items():
        for code in python_blocks(ROOT / "docs" / f"{page}.md"):
            first = code.splitlines()[0]
            chosen = first.removeprefix("# sdk: ").strip() if first.startswith("# sdk:") else sdk
            out.append((page, chosen, code))
    return out


@pytest.mark.parametrize(("page", "sdk", "code"), examples(),
                         ids=[f"{p}-{s}" for p, s, _ in examples()])
def test_docs_example_runs(
    page: str, sdk: str, code: str, live: Server, sdks: dict[str, Path]
) -> None:
    proc = subprocess.run(
        [str(sdks[sdk]), "-c", code], capture_output=True, text=True, timeout=180,
        env={**os.environ, "EASEL_URL": live.url, "EASEL_KEY": KEY},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("language", ["python", "bash"])
def test_easel_api_examples_run(language: str, live: Server) -> None:
    """docs/easel-api.md: its Python example (the main interpreter: httpx) and its curl one."""
    text = (ROOT / "docs" / "easel-api.md").read_text()
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)
    assert blocks, language
    command = [sys.executable, "-c"] if language == "python" else ["bash", "-euo", "pipefail", "-c"]
    for code in blocks:
        proc = subprocess.run([*command, code], capture_output=True, text=True, timeout=180,
                              env={**os.environ, "EASEL_URL": live.url, "EASEL_API_KEY": KEY})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.strip(), code


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
