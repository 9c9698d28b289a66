"""A Hugging Face hub on loopback that serves diffusers folders from disk, speaking the HTTP that
huggingface_hub's snapshot_download uses (repo info, the file tree, resolve with HEAD and GET),
and the gated answer of the real hub (401 with X-Error-Code: GatedRepo)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    folder: Path
    license: str | None = "apache-2.0"
    gated: bool = False


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)  # paths served by GET, in order

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/models/{org}/{name}/revision/{rev}", self.info),
            Route("/api/models/{org}/{name}", self.info),
            Route("/api/models/{org}/{name}/tree/{rev}", self.tree),
            Route("/{org}/{name}/resolve/{rev}/{path:path}", self.resolve, methods=["GET", "HEAD"]),
        ])

    def _repo(self, request: Request) -> Repo | Response:
        repo_id = f"{request.path_params['org']}/{request.path_params['name']}"
        repo = self.repos.get(repo_id)
        if repo is None:
            return Response(status_code=404, headers={
                "X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        if repo.gated:
            return Response(status_code=401, headers={
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo_id} is restricted."})
        return repo

    def _files(self, repo: Repo) -> list[Path]:
        return sorted(p for p in repo.folder.rglob("*") if p.is_file())

    async def info(self, request: Request) -> Response:
        repo = self._repo(request)
        if isinstance(repo, Response):
            return repo
        names = [str(p.relative_to(repo.folder)) for p in self._files(repo)]
        card = {"license": repo.license} if repo.license else {}
        return JSONResponse({
            "id": f"{request.path_params['org']}/{request.path_params['name']}", "sha": COMMIT,
            "private": False, "gated": False, "cardData": card,
            "siblings": [{"rfilename": n} for n in names],
        })

    async def tree(self, request: Request) -> Response:
        repo = self._repo(request)
        if isinstance(repo, Response):
            return repo
        return JSONResponse([
            {"type": "file", "path": str(p.relative_to(repo.folder)), "size": p.stat().st_size,
             "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
            for p in self._files(repo)
        ])

    async def resolve(self, request: Request) -> Response:
        repo = self._repo(request)
        if isinstance(repo, Response):
            return repo
        path = repo.folder / request.path_params["path"]
        if not path.is_file():
            return Response(status_code=404, headers={"X-Error-Code": "EntryNotFound"})
        data = path.read_bytes()
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Content-Length": str(len(data))}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        self.downloads.append(request.path_params["path"])
        return Response(data, headers=headers, media_type="application/octet-stream")


@contextmanager
def running(hub: FakeHub) -> Iterator[str]:
    """Serve the hub on a free loopback port; yields its base URL."""
    config = uvicorn.Config(hub.app(), host="127.0.0.1", port=0, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the fake hub did not start")
        threading.Event().wait(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
