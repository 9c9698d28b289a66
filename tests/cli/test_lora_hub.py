"""`easel lora add` from the Hugging Face Hub (the real huggingface_hub download into the HF
cache, against a hub on loopback; a file the repo does not hold is one line naming it) and
from a URL (the guarded download, once)."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.cli.fake_hub import FakeHub, Repo, running
from tests.cli.test_cli import run
from tests.cli.test_pull import hub_env
from tests.core.test_loras import PRESENT
from tests.loras import make_lora


def test_an_adapter_is_added_from_a_hub_repository(data_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    make_lora("flux2", repo / "ink.safetensors", seed=1)
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    hub = FakeHub({"acme/ink-lora": Repo(repo)})
    with running(hub) as endpoint:
        env = {**hub_env(endpoint, tmp_path / "hf"), "EASEL_CATALOG_FILE": str(catalog)}
        added = run(["lora", "add", "ink", "acme/ink-lora", "--file", "ink.safetensors",
                     "--base", "flux2-klein-4b", "--license", "apache-2.0"], data_dir, **env)
        assert added.returncode == 0, added.stderr
        assert "ink: diffusers LoRA for flux2-klein-4b, rank 4" in added.stdout
        assert "ink.safetensors" in hub.downloads
        missing = run(["lora", "add", "oil", "acme/ink-lora", "--file", "oil.safetensors",
                       "--base", "flux2-klein-4b"], data_dir, **env)
        assert missing.returncode == 2 and missing.stderr.startswith("error: acme/ink-lora/oil")
        assert len(missing.stderr.strip().splitlines()) == 1
    listed = run(["lora", "list"], data_dir, EASEL_CATALOG_FILE=str(catalog))
    assert listed.returncode == 0
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("ink\t")]
    assert row.split("\t")[:5] == ["ink", "flux2-klein-4b", "1", "-", "apache-2.0"]


def test_an_adapter_is_fetched_once_from_a_url(data_dir: Path, tmp_path: Path) -> None:
    """Through the guarded download (loopback allowed only by the test setting); the file is
    then easel's own copy: the URL going away changes nothing."""
    served = tmp_path / "served"
    served.mkdir()
    make_lora("flux2", served / "oil.safetensors", seed=2)
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    env = {"EASEL_CATALOG_FILE": str(catalog)}
    with files_served(served) as url:
        refused = run(["lora", "add", "oil", f"{url}/oil.safetensors", "--base",
                       "flux2-klein-4b"], data_dir, **env)
        assert refused.returncode == 2 and "loopback" in refused.stderr  # the default guard
        added = run(["lora", "add", "oil", f"{url}/oil.safetensors", "--base",
                     "flux2-klein-4b"], data_dir, EASEL_ALLOW_LOOPBACK_URLS="true", **env)
        assert added.returncode == 0, added.stderr
    listed = run(["lora", "list", "--json"], data_dir, **env)
    (entry,) = json.loads(listed.stdout)
    assert entry["source"].endswith("/oil.safetensors") and entry["layout"] == "diffusers"


@contextmanager
def files_served(folder: Path) -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
