"""The architecture, checked on the import graph (grimp reads every import statement, those
inside functions and under TYPE_CHECKING included):

- torch and the libraries built on it are imported only under easel.engine and easel.mini;
- the API reaches the core only through the port (easel.services.port): besides itself it
  imports the domain, the catalog's read-only types, easel.logs and the version, nothing else
  (not the store, the worker, the engine, the runtime or any other service);
- the port names nothing of the core but the domain and the catalog;
- the core names no dialect (no service imports easel.api);
- domain types import nothing of easel but the domain;
- no import cycles between easel's modules.
"""

from __future__ import annotations

import subprocess
import sys

import grimp
import pytest

TORCH_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "torchao", "safetensors")
STORE_DRIVERS = ("psycopg", "boto3", "botocore")
TORCH_HOMES = ("easel.engine", "easel.mini")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("easel", include_external_packages=True, cache_dir=None)


def _internal(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules if m == "easel" or m.startswith("easel."))


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_torch_is_imported_only_by_the_engine_and_mini(graph: grimp.ImportGraph) -> None:
    offenders = [
        f"{importer} imports {library}"
        for library in TORCH_LIBRARIES if library in graph.modules
        for importer in sorted(graph.find_modules_that_directly_import(library))
        if not _under(importer, TORCH_HOMES)
    ]
    assert offenders == []


# All the API may import of easel: itself, the domain, the port, the catalog (read-only types
# of what is served), the log helpers and the version.
API_MAY_IMPORT = ("easel.api", "easel.domain", "easel.services.port", "easel.catalog",
                  "easel.logs")


def _imports_of(graph: grimp.ImportGraph, package: str) -> list[tuple[str, str]]:
    return [(importer, imported)
            for importer in _internal(graph) if _under(importer, (package,))
            for imported in sorted(graph.find_modules_directly_imported_by(importer))
            if imported == "easel" or imported.startswith("easel.")]


def test_the_api_reaches_the_core_only_through_the_port(graph: grimp.ImportGraph) -> None:
    offenders = [f"{importer} imports {imported}"
                 for importer, imported in _imports_of(graph, "easel.api")
                 if imported != "easel" and not _under(imported, API_MAY_IMPORT)]
    assert offenders == []


def test_the_port_names_only_the_domain_and_the_catalog(graph: grimp.ImportGraph) -> None:
    offenders = [f"{importer} imports {imported}"
                 for importer, imported in _imports_of(graph, "easel.services.port")
                 if not _under(imported, ("easel.domain", "easel.catalog"))]
    assert offenders == []


@pytest.mark.parametrize("core", ["easel.services", "easel.store", "easel.worker",
                                  "easel.engine", "easel.domain", "easel.catalog"])
def test_the_core_names_no_dialect(graph: grimp.ImportGraph, core: str) -> None:
    offenders = [f"{importer} imports {imported}"
                 for importer, imported in _imports_of(graph, core)
                 if _under(imported, ("easel.api",))]
    assert offenders == []


def test_the_domain_imports_only_the_domain(graph: grimp.ImportGraph) -> None:
    offenders = [
        f"{importer} imports {imported}"
        for importer in _internal(graph) if _under(importer, ("easel.domain",))
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
        if imported.startswith("easel") and not _under(imported, ("easel.domain",))
    ]
    assert offenders == []


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = set()
    for importer in _internal(graph):
        for imported in graph.find_modules_directly_imported_by(importer):
            if not imported.startswith("easel") or imported == importer:
                continue
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.add(" -> ".join((importer, *back)))
    assert sorted(cycles) == []


def test_the_api_process_never_loads_torch_nor_drivers_it_does_not_use() -> None:
    """Build and start the app API-only (no in-process worker), serve a request, and look at
    what the interpreter loaded: no torch, and on the embedded store (SQLite, images on disk)
    neither PostgreSQL's driver nor boto3, which only cost start-up time there."""
    script = """
import sys, tempfile
from fastapi.testclient import TestClient
from easel.runtime.build import build_app
from easel.settings import Settings
settings = Settings(data_dir=tempfile.mkdtemp(), run_worker=False, preload_models=[],
                    allowed_hosts=["testserver"])
with TestClient(build_app(settings)) as client:
    assert client.get("/readyz").status_code == 200
    reply = client.post("/v1", json=[{"taskType": "imageInference", "model": "google:2@3",
        "taskUUID": "0b1e4c3e-4ad2-4d0c-9d2b-6c9d3c9a0f11", "positivePrompt": "a fox",
        "width": 1024, "height": 1024, "deliveryMethod": "async"}])
    assert reply.status_code == 200, reply.text
for name, libraries in zip(("TORCH", "DRIVERS"), sys.argv[1:]):
    print(name, sorted(m for m in sys.modules if m.split(".")[0] in libraries.split(",")))
"""
    result = subprocess.run([sys.executable, "-c", script, ",".join(TORCH_LIBRARIES),
                             ",".join(STORE_DRIVERS)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH []" in result.stdout and "DRIVERS []" in result.stdout, result.stdout
