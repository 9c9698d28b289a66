"""Shared test set-up: no network beyond loopback, offline hub, a private data directory."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easel.services.delivery.outbound import is_loopback_host

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compute thread per process (torch, and the servers and workers the tests start, which
# inherit it): the suite runs a process per core already, and two threads each on two cores
# spent more than twice the CPU time in contention.
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
# No name lookups beyond localhost, here (below) and in every Python process the tests start
# (offline/sitecustomize.py, found through PYTHONPATH).
_OFFLINE = str(Path(__file__).parent / "offline")
_PATHS = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != _OFFLINE]
os.environ["PYTHONPATH"] = os.pathsep.join([_OFFLINE, *_PATHS])


def _one_tls_context() -> None:
    """httpx makes a TLS context for every client, loading certifi's CA bundle each time: 23 ms
    of CPU for each of the some 3,000 module-level calls (httpx.get, httpx.post) a run makes in
    its test processes, all to plain-HTTP loopback servers (68 s of CPU a run, measured). Here
    clients that ask for the default verification share one context, made once per process."""
    from httpx._transports import default as transports

    real = getattr(transports, "create_ssl_context", None)
    if real is None:  # another httpx: it makes its contexts as it likes
        return
    shared = real()

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None and trust_env:
            return shared
        return real(verify=verify, cert=cert, trust_env=trust_env)

    transports.create_ssl_context = create_ssl_context


_one_tls_context()

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like stay on this machine
        return True
    return is_loopback_host(address[0])


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may only reach loopback, not {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may only reach loopback, not {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def loopback_only() -> Iterator[None]:
    """Every socket a test opens in this process may connect to loopback only, and no name but
    localhost is looked up (no DNS query leaves the machine)."""
    from tests.offline.sitecustomize import _getaddrinfo_offline, _real_getaddrinfo

    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo_offline
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The cache of built-in tiny models that the test servers share too (server_harness), so
    each stand-in is built once per run, not once per worker and per server. They are
    deterministic, and a build lands by an atomic rename, so parallel workers may race."""
    from tests.server_harness import MODELS_CACHE

    MODELS_CACHE.mkdir(parents=True, exist_ok=True)
    return MODELS_CACHE


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EASEL_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One real PostgreSQL server for this test process (tests/postgres.py). CI installs it
    (scripts/system-deps); elsewhere a machine without it skips these tests, saying why."""
    from tests.postgres import PostgresServer, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL's server is not installed (Debian: postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bin_dir).start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3() -> Iterator[Any]:
    """One S3-compatible server (moto's server mode) on loopback for this test process; a test
    takes its own bucket of it (`new_bucket`). tests/s3.py."""
    from tests.s3 import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The job store's URL, once on each engine easel supports: a test that takes it runs on
    SQLite in a file and on a fresh database of a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("postgres").new_database()
    return url


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start creating missing SDK venvs now, in parallel (in the controller of a parallel
    run, or in a plain one), so the dialect tests seldom wait for pip."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from tests.sdk_venvs import prebuild

    session.config.stash[_BUILDERS] = prebuild()


def pytest_sessionfinish(session: pytest.Session) -> None:
    for thread in session.config.stash.get(_BUILDERS, []):
        thread.join(timeout=900)


_BUILDERS = pytest.StashKey[list[Any]]()


# The longest test files, started first: `make test` hands whole files to its workers in this
# order (xdist's own reorder, by number of tests, is turned off there), so a long file collected
# last would run alone at the end while the other workers sit idle (the longest first is the
# classic way to shorten such a schedule). Every file above 20 s, longest first, as their tests'
# times (setup, call and teardown) added up in a run of `make test` on the 2-core VM, 2026-12-06.
LONGEST_FIRST = (
    "tests/faults/test_scale_out.py", "tests/dialects/test_meaning.py",
    "tests/pages/test_playground.py", "tests/cli/test_cli.py", "tests/engine/test_optimize.py",
    "tests/faults/test_fuzz.py", "tests/docs/test_examples.py", "tests/server/test_server.py",
    "tests/engine/test_engine.py", "tests/engine/test_every_size.py",
    "tests/security/test_hardening_slow.py", "tests/edge/test_lora_page.py",
    "tests/dialects/test_sdks_on_tiny.py", "tests/cli/test_lora_hub.py",
    "tests/cli/test_local_weights.py", "tests/cli/test_pull.py",
    "tests/dialects/test_contract.py", "tests/delivery/test_webhooks.py",
    "tests/server/test_cancel_and_workers.py", "tests/faults/test_shutdown_and_poison.py",
    "tests/faults/test_soak_short.py", "tests/engine/test_adapters.py",
    "tests/dialects/test_openai.py", "tests/deploy/test_wheel.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the others, is kept


def pytest_unconfigure(config: pytest.Config) -> None:
    """The names of failed tests once more, after pytest's summary line: on CI, where assertion
    messages are printed whole, a long one otherwise leaves the name out of a log's tail."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):  # an xdist worker reports nothing
        return
    failed = [report.nodeid for kind in ("failed", "error")
              for report in reporter.stats.get(kind, []) if getattr(report, "nodeid", "")]
    for nodeid in failed:
        reporter.write_line(f"failed: {nodeid}")
