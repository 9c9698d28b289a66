"""LoRA adapters around the engine: the rules a request's adapters meet (API processes), the
files a worker makes ready for its engine, and adding one to the allow-list (`easel lora add`).

No torch here: the deep check of a file's tensors is the engine's (`easel.engine.adapters`),
which the CLI calls through `AdapterCheck`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from easel.catalog import Backend, Catalog
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.generation import AdapterSpec
from easel.domain.lora import WEIGHT_RANGE, Adapter, AppliedLora, LoraChoice
from easel.store.blobs import BlobStore
from easel.store.loras import LoraStore

log = logging.getLogger(__name__)

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # the format's own bound on its JSON header


class AdapterRules:
    """What a request's adapters must be, checked when it is submitted: allow-listed, made for
    the backend of the model asked for, a weight in range, few enough, each once."""

    def __init__(self, store: LoraStore, max_per_request: int) -> None:
        self.store = store
        self.max_per_request = max_per_request

    def applied(self, choices: Sequence[LoraChoice], backend: Backend,
                parameter: str) -> tuple[AppliedLora, ...]:
        """The adapters the job runs with, each pinned to the bytes allow-listed now."""
        if not choices:
            return ()
        if len(choices) > self.max_per_request:
            raise invalid(parameter, f"{parameter} names {len(choices)} adapters; at most "
                                     f"{self.max_per_request} per request "
                                     "(EASEL_MAX_LORAS_PER_REQUEST)")
        applied = [self._one(choice, backend, f"{parameter}[{i}]")
                   for i, choice in enumerate(choices)]
        names = [a.name for a in applied]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise invalid(f"{parameter}[{i}]", f"{parameter}[{i}] names the adapter "
                                                  f"{name!r} a second time")
        return tuple(applied)

    def _one(self, choice: LoraChoice, backend: Backend, parameter: str) -> AppliedLora:
        adapter = self.store.get(choice.name) if isinstance(choice.name, str) else None
        if adapter is None:
            fitting = sorted(a.name for a in self.store.list() if a.base == backend.name)
            offer = (f"adapters for {backend.name} here: {', '.join(fitting)}" if fitting
                     else f"no adapter for {backend.name} is allow-listed here")
            raise invalid(parameter, f"{parameter}: no adapter {str(choice.name)[:100]!r} on "
                                     f"this server's allow-list; {offer}")
        if adapter.base != backend.name:
            raise invalid(parameter, f"{parameter}: the adapter {adapter.name!r} was made for "
                                     f"{adapter.base}, and this model runs {backend.name}")
        weight = adapter.scale if choice.weight is None else choice.weight
        low, high = WEIGHT_RANGE
        if isinstance(weight, bool) or not isinstance(weight, int | float) or \
                not math.isfinite(weight) or not low <= weight <= high:
            raise invalid(parameter, f"{parameter}: weight must be a number {low:g}..{high:g}, "
                                     f"got {weight!r}")
        return AppliedLora(adapter.name, adapter.digest, float(weight))


class AdapterFiles:
    """The worker's local copies of allow-listed adapters, taken from the image store (where
    `easel lora add` put them, so every worker machine finds them) and checked by digest.
    `listed(digest)`: whether some allow-listed name still holds those bytes (the job store's
    `LoraStore.digest_in_use`)."""

    def __init__(self, blobs: BlobStore, cache_dir: Path, listed: Callable[[str], bool]) -> None:
        self.blobs = blobs
        self.cache_dir = cache_dir
        self.listed = listed
        self._checked: set[str] = set()  # digests whose local copy this process verified

    def ready(self, applied: Sequence[AppliedLora]) -> tuple[AdapterSpec, ...]:
        return tuple(AdapterSpec(a.name, str(self._local(a)), a.digest, a.weight)
                     for a in applied)

    def _local(self, applied: AppliedLora) -> Path:
        # Asked before the local copy is used: a copy left from an earlier job must not run an
        # adapter the operator removed since this job was accepted.
        if not self.listed(applied.digest):
            raise _removed(applied)
        path = self.cache_dir / f"{applied.digest}.safetensors"
        if applied.digest in self._checked and path.exists():
            return path
        if not path.exists() or _sha256_of(path) != applied.digest:
            self._copy_from_store(applied, path)
        self._checked.add(applied.digest)
        return path

    def _copy_from_store(self, applied: AppliedLora, path: Path) -> None:
        key = f"lora-{applied.digest}.safetensors"
        found = self.blobs.open(key)
        if found is None:  # removed between the question above and now
            raise _removed(applied)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        # Written beside its final name and renamed: a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as out:
            for chunk in found[1]:
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != applied.digest:
            os.unlink(out.name)
            raise EaselError(ErrorKind.INTERNAL, f"the stored copy of adapter {applied.name!r} "
                             "does not match its digest", "lora")
        os.replace(out.name, path)


def _removed(applied: AppliedLora) -> EaselError:
    return EaselError(ErrorKind.UNAVAILABLE, f"the adapter {applied.name!r} (sha256 "
                      f"{applied.digest[:12]}) is no longer on this server: it was removed "
                      "from the allow-list after the job was accepted", "lora")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class AdapterFacts:
    """What the engine's check found in a file (easel.engine.adapters.check_adapter_file)."""

    layout: str
    rank: int | None
    modules: int


# (path, family, config source or None) -> facts; raises ValueError with the reason.
AdapterCheck = Callable[[Path, str, str | None], AdapterFacts]


@dataclass(frozen=True)
class NewAdapter:
    """What the operator gave `easel lora add`."""

    name: str
    source: str
    base: str
    scale: float = 1.0
    trigger: str = ""
    license: str = ""
    aliases: tuple[str, ...] = ()


def check_new(new: NewAdapter, catalog: Catalog, store: LoraStore) -> Backend:
    """The operator's request, before any file is read; its backend."""
    if not NAME.fullmatch(new.name):
        raise ValueError(f"the name {new.name!r} must be 1-64 of a-z, 0-9, '.', '_', '-', "
                         "starting with a letter or digit")
    backend = catalog.backends.get(new.base)
    if backend is None:
        raise ValueError(f"no backend {new.base!r} in the catalog; backends: "
                         f"{', '.join(sorted(catalog.backends))}")
    low, high = WEIGHT_RANGE
    if not math.isfinite(new.scale) or not low <= new.scale <= high:
        raise ValueError(f"--scale must be {low:g}..{high:g}, got {new.scale}")
    if store.get(new.name) is not None:
        raise ValueError(f"an adapter named {new.name!r} exists; `easel lora remove "
                         f"{new.name}` first")
    for alias in new.aliases:
        if store.get(alias) is not None:
            raise ValueError(f"the id {alias!r} already names an adapter")
    return backend


def looks_like_safetensors(data: bytes) -> bool:
    """The format's frame: an 8-byte little-endian header length, then a JSON object. A pickle
    (a .ckpt, a .pt, a .bin) fails here, before anything parses it."""
    if len(data) < 10:
        return False
    length = int.from_bytes(data[:8], "little")
    return 2 <= length <= min(SAFETENSORS_HEADER_LIMIT, len(data) - 8) and data[8:9] == b"{"


def admit(new: NewAdapter, data: bytes, backend: Backend, check: AdapterCheck,
          store: LoraStore, blobs: BlobStore, config: str | None,
          clock: Callable[[], float] = time.time) -> Adapter:
    """Check the file's bytes against its base and put it on the allow-list (the bytes in the
    image store, the entry in the job store)."""
    if not looks_like_safetensors(data):
        raise ValueError(f"{new.source} is not a .safetensors file (only safetensors are "
                         "taken: a pickled checkpoint can run code when loaded)")
    digest = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory() as scratch:
        # Named as the operator named the adapter: the check's messages name the file.
        path = Path(scratch) / f"{new.name}.safetensors"
        path.write_bytes(data)
        facts = check(path, backend.family, config)
    adapter = Adapter(new.name, new.base, digest, len(data), new.source, new.scale, new.trigger,
                      new.license, new.aliases, facts.layout, facts.rank, clock())
    blobs.put(adapter.blob_key, data, "application/octet-stream")
    if not store.add(adapter):
        raise ValueError(f"an adapter named {new.name!r} was added meanwhile")
    return adapter


def forget(name: str, store: LoraStore, blobs: BlobStore) -> Adapter | None:
    """Take `name` off the allow-list; its bytes go too unless another name holds them. Jobs
    accepted with it and not yet run fail with a clear reason."""
    removed = store.remove(name)
    if removed is not None and not store.digest_in_use(removed.digest):
        blobs.delete(removed.blob_key)
    return removed
