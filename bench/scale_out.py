"""Scale-out load: 100 concurrent clients at a constant arrival rate against two topologies.

- `embedded`: one `easel serve` (SQLite, images on local disk, the in-process worker);
- `scaled`: 2 API processes (`easel serve --no-worker`) and 3 `easel worker` processes sharing a
  real PostgreSQL (Debian's server, initdb in a temp dir) and an S3-compatible server (moto, on
  loopback), each process with its own data dir.

Every process serves the tiny stand-in at 64x64 on the CPU. Each client sends synchronous
Runware `imageInference` requests (the reply carries the image), round-robin over the API
processes, on a fixed schedule: together the clients send `--rate` requests a second. A request
whose slot comes while its client is still waiting goes out late, and its latency is counted
from its slot, not from when it went out (no coordinated omission). Afterwards the job store is
read: every acknowledged task must be completed exactly once.

    .venv/bin/python -m bench.scale_out --topology both --rate 12 --seconds 180
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from tests.cluster import Workers
from tests.postgres import PostgresServer, postgres_bin
from tests.s3 import S3Server
from tests.server_harness import Server

CLIENTS = 100


@dataclass
class Results:
    latency: dict[str, float] = field(default_factory=dict)  # task -> seconds from its slot
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    late: int = 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_client(n: int, urls: list[str], rate: float, start: float, until: float,
                     out: Results) -> None:
    period = CLIENTS / rate  # each client's own interval; the clients are staggered
    slot = start + n / rate
    async with httpx.AsyncClient(timeout=600) as http:
        while slot < until:
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                out.late += 1
            task_uuid = str(uuid.uuid4())
            task = {"taskType": "imageInference", "taskUUID": task_uuid, "model": "google:2@3",
                    "positivePrompt": "a red fox in snow", "width": 64, "height": 64}
            url = urls[out.sent % len(urls)]
            out.sent += 1
            try:
                reply = await http.post(f"{url}/v1", json=[task])
                body = reply.json()
                if reply.status_code != 200 or "errors" in body:
                    out.errors.append(f"{reply.status_code} {reply.text[:200]}")
                else:
                    out.latency[task_uuid] = time.monotonic() - slot
            except httpx.HTTPError as exc:
                out.errors.append(repr(exc))
            slot += period


async def drive(urls: list[str], rate: float, seconds: float) -> tuple[Results, float]:
    out = Results()
    start = time.monotonic() + 1.0
    until = start + seconds
    await asyncio.gather(*(one_client(n, urls, rate, start, until, out)
                           for n in range(CLIENTS)))
    return out, time.monotonic() - start


def job_rows(url: str) -> dict[str, tuple[Any, ...]]:
    engine = sa.create_engine(url.replace("postgresql:", "postgresql+psycopg:")
                              if url.startswith("postgresql:") else url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text(
                "SELECT task_id, status, attempts, created_at, started_at FROM jobs"))
            return {r[0]: tuple(r) for r in found}
    finally:
        engine.dispose()


def report(name: str, out: Results, wall: float, rows: dict[str, tuple[Any, ...]],
           args: argparse.Namespace) -> str:
    done = [t for t in out.latency if t in rows]
    lost = [t for t in out.latency if t not in rows or rows[t][1] != "completed"]
    rerun = [t for t, r in rows.items() if r[2] != 1]
    queue = [rows[t][4] - rows[t][3] for t in done]
    e2e = list(out.latency.values())
    ms = "{:.0f}".format
    line = (f"| {name} | {args.rate:g}/s x {args.seconds:g} s | {out.sent} | "
            f"{len(out.latency) / wall:.1f} | {len(out.errors) / max(out.sent, 1):.2%} | "
            f"{len(lost)} / {len(rerun)} | "
            f"{ms(pct(queue, .5) * 1e3)} / {ms(pct(queue, .95) * 1e3)} / "
            f"{ms(pct(queue, .99) * 1e3)} ms | "
            f"{ms(pct(e2e, .5) * 1e3)} / {ms(pct(e2e, .95) * 1e3)} / "
            f"{ms(pct(e2e, .99) * 1e3)} ms | {out.late} |")
    if out.errors:
        line += f"\n  first errors: {out.errors[:3]}"
    return line


BASE_ENV = {"EASEL_STAND_IN": "tiny", "EASEL_RATE_LIMIT_PER_SECOND": 0,
            "EASEL_MAX_QUEUE_DEPTH": 100000, "EASEL_BATCH_SIZE": 4}


def embedded(root: Path, args: argparse.Namespace) -> str:
    srv = Server(root / "embedded", engine="tiny", **BASE_ENV).start()
    try:
        out, wall = asyncio.run(drive([srv.url], args.rate, args.seconds))
        rows = job_rows(f"sqlite:///{srv.data_dir / 'easel.db'}")
    finally:
        srv.stop()
    return report("embedded: 1 process, SQLite, local disk", out, wall, rows, args)


def scaled(root: Path, args: argparse.Namespace) -> str:
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL's server is not installed (Debian: postgresql)")
    postgres, s3 = PostgresServer(bin_dir).start(), S3Server().start()
    apis: list[Server] = []
    workers = Workers(root / "workers", {})
    try:
        database, bucket = postgres.new_database(), s3.new_bucket()
        env = {**BASE_ENV, "EASEL_DATABASE": database, "EASEL_SECRET_KEY": "bench",
               **s3.env(bucket)}
        apis = [Server(root / f"api{i}", command=["-m", "easel.cli", "serve", "--no-worker"],
                       **env) for i in range(2)]
        for api in apis:
            api.start(wait_ready=False)
        workers.root.mkdir(parents=True)
        workers.env = {**env, "EASEL_CATALOG_FILE": str(apis[0].data_dir / "catalog.toml"),
                       "EASEL_NUM_THREADS": 1}  # three workers share two cores
        for _ in range(3):
            workers.start()
        workers.wait_ready()
        out, wall = asyncio.run(drive([a.url for a in apis], args.rate, args.seconds))
        rows = job_rows(database)
    finally:
        workers.stop()
        for api in apis:
            api.stop()
        s3.stop()
        postgres.close()
    return report("scaled: 2 API + 3 workers, PostgreSQL, S3", out, wall, rows, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--rate", type=float, default=12.0, help="requests per second, all "
                        "clients together")
    parser.add_argument("--seconds", type=float, default=180.0)
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.topology in ("embedded", "both"):
            lines.append(embedded(Path(tmp), args))
        if args.topology in ("scaled", "both"):
            lines.append(scaled(Path(tmp), args))
    print("| topology | load | sent | completed/s | errors | lost / re-run | queue wait "
          "p50 / p95 / p99 | end to end p50 / p95 / p99 | sent late |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
