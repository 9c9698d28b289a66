"""The wheel: it builds from a copy of the repository with the build backend alone, carries every
file easel reads at run time, and works installed outside the repository, as an operator
installs it (docs/deploy.md, "From the wheel"), with nothing but what its metadata declares
(tests/deploy/borrowed.py says how, without PyPI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

import easel
from easel.catalog import Catalog
from easel.settings import Settings
from tests.deploy import borrowed, dockerfile
from tests.deploy.conftest import copy_of
from tests.deploy.dockerfile import ROOT
from tests.server_harness import SMALL_SIZES, free_port

UV = Path(sys.executable).with_name("uv")  # a dev dependency, as tests/sdk_venvs.py uses it


@pytest.fixture(scope="module")
def wheel(clean_checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build per session: `uv build` with this venv's setuptools (no build isolation, which
    would fetch setuptools from PyPI), in a copy of its own (a build writes into its tree)."""
    tree = copy_of(clean_checkout, tmp_path_factory.mktemp("build"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(UV), "build", "-q", "--wheel", "--no-build-isolation", "--python",
                    sys.executable, "--out-dir", str(out), str(tree)],
                   check=True, capture_output=True, timeout=300)
    (built,) = out.glob("easel-*.whl")
    return built


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()


@dataclass(frozen=True)
class Installed:
    venv: Path
    elsewhere: Path  # a working directory outside the repository
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=self.elsewhere, env=self.env, capture_output=True,
                              text=True, timeout=120)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    venv = tmp_path_factory.mktemp("site") / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)],
                   check=True, capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run([str(UV), "pip", "install", "-q", "--no-deps", "--python", str(python),
                    str(wheel)], check=True, capture_output=True, timeout=120)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    declared = borrowed.requirements_of(_metadata(wheel))
    lent = venv.parent / "lent"
    borrowed.lend(borrowed.closure([*declared, *borrowed.INSTALLED_APART]), lent)
    (Path(site.stdout.strip()) / "lent.pth").write_text(f"{lent}\n")
    home = venv.parent / "home"
    home.mkdir()
    kept = {k: v for k, v in os.environ.items()
            if not k.startswith(("EASEL_", "PYTHON", "VIRTUAL_ENV", "HF_"))}
    env = {**kept, "PATH": f"{venv / 'bin'}{os.pathsep}{os.defpath}", "HOME": str(home),
           "EASEL_DATA_DIR": str(home / "data"), "HF_HOME": str(home / "hf"),
           "HF_HUB_OFFLINE": "1"}
    return Installed(venv, home, env)


def test_wheel_carries_every_file_of_the_package(wheel: Path, clean_checkout: Path) -> None:
    """Whatever easel reads at run time through importlib.resources or next to its modules
    (the catalog, the playground, easel-mini's weights and tokenizer) is a file under
    src/easel; all of them must ship, Python or not. How easel-mini is made (examples/) does
    not ship."""
    shipped = set(zipfile.ZipFile(wheel).namelist())
    package = clean_checkout / "src"
    files = {p.relative_to(package).as_posix() for p in (package / "easel").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    assert {"easel/catalog.toml", "easel/api/playground/index.html",
            "easel/api/playground/playground.js", "easel/api/playground/playground.css",
            "easel/mini/weights/tokenizer/tokenizer.json", "easel/mini/weights/model_index.json",
            "easel/mini/weights/unet/diffusion_pytorch_model.safetensors"} <= files
    assert sorted(files - shipped) == []
    assert not [name for name in shipped if name.startswith(("examples/", "easel/mini/train"))]


def test_import_finds_the_wheel_not_the_repository(installed: Installed) -> None:
    probe = installed.run("python", "-c", "import easel, json, sys; "
                          "print(json.dumps({'file': easel.__file__, 'path': sys.path}))")
    assert probe.returncode == 0, probe.stderr
    where = json.loads(probe.stdout)
    assert Path(where["file"]).is_relative_to(installed.venv), where["file"]
    source = ROOT / "src"
    assert not [p for p in where["path"] if p and Path(p).resolve().is_relative_to(source)]


def test_cli_runs_from_outside_the_repository(installed: Installed) -> None:
    version = installed.run("easel", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"easel {easel.__version__}"
    listing = installed.run("easel", "models", "--json")
    assert listing.returncode == 0, listing.stderr
    models = json.loads(listing.stdout)
    assert [m["id"] for m in models] == list(Catalog.load().model_ids)  # the packaged catalog
    assert all(m["weights"] == "absent" for m in models if not m["source"].startswith("easel/"))


def test_installed_engine_draws_an_image(installed: Installed, model_cache: Path) -> None:
    """The engine's side of the declared dependencies (torch, diffusers, the encoders and the
    provenance marks), on the offline stand-in at the test suite's small sizes."""
    data = Path(installed.env["EASEL_DATA_DIR"])
    data.mkdir(exist_ok=True)
    if not (data / "models").exists():
        (data / "models").symlink_to(model_cache, target_is_directory=True)  # built once a run
    catalog = installed.elsewhere / "small.toml"
    catalog.write_text(SMALL_SIZES)
    out = installed.elsewhere / "out"
    drawn = subprocess.run(["easel", "generate", "a red fox in snow", "--seed", "7", "-o",
                            str(out), "--format", "png"], cwd=installed.elsewhere,
                           env={**installed.env, "EASEL_CATALOG_FILE": str(catalog)},
                           capture_output=True, text=True, timeout=300)
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    (image,) = out.glob("*.png")
    with Image.open(image) as picture:
        assert picture.size == (64, 64)  # the small catalog's 1:1


def test_listening_beyond_loopback_needs_keys(installed: Installed) -> None:
    """What the images rely on: `serve --host 0.0.0.0` with no key stops before it binds."""
    refused = installed.run("easel", "serve", "--host", "0.0.0.0", "--port", str(free_port()),
                            "--no-worker")
    assert refused.returncode == 2
    assert "EASEL_API_KEYS" in refused.stderr and "--insecure-no-auth" in refused.stderr


@pytest.fixture
def served(installed: Installed) -> Iterator[tuple[subprocess.Popen[str], str, dict[str, str]]]:
    port = free_port()
    env = {**installed.env, "EASEL_PORT": str(port)}
    log = installed.elsewhere / f"serve-{port}.log"
    with log.open("w") as output:
        proc = subprocess.Popen(["easel", "serve", "--no-worker"], cwd=installed.elsewhere,
                                env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_live(proc, url, log)
        yield proc, url, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _wait_live(proc: subprocess.Popen[str], url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/livez not 200 after {timeout} s")


def test_installed_server_serves_its_packaged_page_and_drains_on_sigterm(
    served: tuple[subprocess.Popen[str], str, dict[str, str]], clean_checkout: Path
) -> None:
    proc, url, env = served
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    script = httpx.get(f"{url}/playground/playground.js", timeout=10)
    shipped = clean_checkout / "src" / "easel" / "api" / "playground" / "playground.js"
    assert script.content == shipped.read_bytes()
    # The images' HEALTHCHECK, run as Docker runs it (the venv's python first on PATH).
    health = dockerfile.read().stages["cuda"].json_form("HEALTHCHECK")
    probe = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    proc.send_signal(signal.SIGTERM)  # what docker stop and systemctl stop send
    assert proc.wait(Settings().shutdown_grace_seconds + 30) == 0
    down = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode != 0
