"""LoRA adapters in the core: the rules a request's adapters meet, the digest a job is pinned
to, one engine call per adapter set, and an adapter removed before its job ran (fake engine;
the pixels an adapter changes are tests/engine/test_adapters.py's and tests/edge/
test_loras_e2e.py's)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save
from sqlalchemy.engine import Engine

from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import JobStatus
from easel.domain.lora import Adapter, LoraChoice
from easel.domain.submission import Submission, WireNames
from easel.runtime.build import build_blobs, build_job_store
from easel.services.loras import AdapterFacts, NewAdapter, admit, check_new, forget
from easel.settings import Settings
from easel.store import LoraStore
from tests.core.conftest import Core, submission
from tests.server_harness import SMALL_SIZES

# Fast and Standard run the tiny pipelines, always present (adapters need real weights);
# Ultra's weights are absent here, so a stand-in serves it.
PRESENT = SMALL_SIZES + """
[backends.flux2-klein-4b]
source = "easel/tiny-flux2"
steps = 2

[backends.z-image-turbo]
source = "easel/tiny-zimage"
steps = 2
"""
FAST, STANDARD, ULTRA = "google:2@3", "google:2@1", "google:2@2"


def stub_check(path: Path, family: str, config: str | None) -> AdapterFacts:
    """The engine's tensor check (tests/engine/test_adapters.py tests it): the fake engine
    applies nothing, so any safetensors file stands in for an adapter here."""
    return AdapterFacts("diffusers", 4, 2)


def allow(settings: Settings, name: str, base: str = "flux2-klein-4b", scale: float = 1.0,
          aliases: tuple[str, ...] = (), content: float = 1.0, trigger: str = "",
          license: str = "") -> Adapter:
    """Allow-list an adapter as `easel lora add` does (its own bytes: `content`)."""
    store = LoraStore(_engine(settings))
    new = NewAdapter(name, f"/adapters/{name}.safetensors", base, scale, trigger=trigger,
                     license=license, aliases=aliases)
    catalog = catalog_of(settings) if settings.catalog_file else Catalog.load()
    backend = check_new(new, catalog, store)
    data = save({"w": np.full((2, 2), content, dtype=np.float32)})
    return admit(new, data, backend, stub_check, store, build_blobs(settings), None)


def catalog_of(settings: Settings) -> Catalog:
    return Catalog.load(*filter(None, [settings.catalog_file]))


def _engine(settings: Settings) -> Engine:
    return build_job_store(settings).engine


@pytest.fixture
def lora_core(core: Callable[..., Core], tmp_path: Path) -> Core:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    return core(catalog_file=catalog)


def with_loras(*choices: LoraChoice, model: str = FAST, task_id: str | None = None,
               prompt: str = "a red fox") -> Submission:
    base = submission(prompt, model=model, task_id=task_id, names=WireNames({"loras": "lora"}))
    return dataclasses.replace(base, generation=dataclasses.replace(base.generation,
                                                                   loras=choices))


async def test_a_job_runs_with_its_adapters_pinned_to_the_allow_listed_bytes(
    lora_core: Core,
) -> None:
    c = lora_core
    ink = allow(c.settings, "ink", scale=0.8, aliases=("civitai:1@2",))
    job, _ = await c.runtime.jobs.submit(with_loras(LoraChoice("civitai:1@2")))
    assert [(a.name, a.digest, a.weight) for a in job.request.loras] == [("ink", ink.digest, 0.8)]
    assert c.worker.run_until_empty() == 1
    (call,) = c.engine.calls
    (spec,) = call.adapters
    assert (spec.name, spec.digest, spec.weight) == ("ink", ink.digest, 0.8)
    # The worker's copy is the allow-listed bytes, checked by digest.
    assert hashlib.sha256(Path(spec.path).read_bytes()).hexdigest() == ink.digest
    done = await c.runtime.jobs.get(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED


@pytest.mark.parametrize(("choices", "model", "parameter", "words"), [
    ((LoraChoice("nope"),), FAST, "lora[0]", "no adapter 'nope' on this server's allow-list; "
                                             "adapters for flux2-klein-4b here: ink"),
    ((LoraChoice("zed"),), FAST, "lora[0]", "made for z-image-turbo, and this model runs "
                                            "flux2-klein-4b"),
    ((LoraChoice("ink", 4.5),), FAST, "lora[0]", "weight must be a number -4..4, got 4.5"),
    ((LoraChoice("ink", float("nan")),), FAST, "lora[0]", "weight must be a number -4..4"),
    ((LoraChoice("ink"), LoraChoice("civitai:1@2")), FAST, "lora[1]",
     "names the adapter 'ink' a second time"),
    ((LoraChoice("ink"),) * 5, FAST, "lora", "names 5 adapters; at most 4 per request"),
    ((LoraChoice("ultra-ink"),), ULTRA, "lora", "adapters need the real weights of qwen-image"),
])
async def test_each_bad_adapter_choice_is_refused_naming_the_parameter(
    lora_core: Core, choices: tuple[LoraChoice, ...], model: str, parameter: str, words: str,
) -> None:
    allow(lora_core.settings, "ink", aliases=("civitai:1@2",))
    allow(lora_core.settings, "zed", base="z-image-turbo", content=2.0)
    allow(lora_core.settings, "ultra-ink", base="qwen-image", content=3.0)
    with pytest.raises(EaselError) as info:
        await lora_core.runtime.jobs.submit(with_loras(*choices, model=model))
    assert info.value.parameter == parameter
    assert words in info.value.message
    kind = ErrorKind.UNSUPPORTED if model == ULTRA else ErrorKind.INVALID
    assert info.value.kind is kind


async def test_jobs_with_another_adapter_set_never_share_an_engine_call(
    lora_core: Core,
) -> None:
    c = lora_core
    allow(c.settings, "ink")
    allow(c.settings, "oil", content=2.0)
    sets = [(LoraChoice("ink", 0.5),), (LoraChoice("ink", 0.5),), (LoraChoice("ink", 1.0),),
            (LoraChoice("ink", 0.5), LoraChoice("oil", 1.0)), ()]
    for i, choices in enumerate(sets):
        await c.runtime.jobs.submit(with_loras(*choices, prompt=f"fox {i}"))
    assert c.worker.run_until_empty() == 5
    calls = sorted(([(a.name, a.weight) for a in call.adapters],
                    sorted(s.prompt for s in call.images)) for call in c.engine.calls)
    assert calls == [
        ([], ["fox 4"]),
        ([("ink", 0.5)], ["fox 0", "fox 1"]),  # the same set: one call
        ([("ink", 0.5), ("oil", 1.0)], ["fox 3"]),
        ([("ink", 1.0)], ["fox 2"]),
    ]


async def test_a_task_id_sent_again_with_another_weight_is_a_conflict(lora_core: Core) -> None:
    allow(lora_core.settings, "ink")
    jobs = lora_core.runtime.jobs
    first, _ = await jobs.submit(with_loras(LoraChoice("ink", 0.5), task_id="t-1"))
    again, created = await jobs.submit(with_loras(LoraChoice("ink", 0.5), task_id="t-1"))
    assert again.id == first.id and not created
    with pytest.raises(EaselError) as info:
        await jobs.submit(with_loras(LoraChoice("ink", 0.6), task_id="t-1"))
    assert info.value.kind is ErrorKind.CONFLICT


async def test_an_adapter_removed_before_its_job_ran_fails_the_job_clearly(
    lora_core: Core,
) -> None:
    c = lora_core
    allow(c.settings, "ink")
    job, _ = await c.runtime.jobs.submit(with_loras(LoraChoice("ink")))
    store = LoraStore(_engine(c.settings))
    assert forget("ink", store, build_blobs(c.settings)) is not None
    c.worker.run_until_empty()
    failed = await c.runtime.jobs.get(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error_message is not None
    assert "removed from the allow-list after the job was accepted" in failed.error_message
    assert not c.engine.calls
    with pytest.raises(EaselError):  # and new requests naming it are refused
        await c.runtime.jobs.submit(with_loras(LoraChoice("ink")))


async def test_an_adapter_removed_fails_its_queued_job_on_a_worker_that_has_run_it(
    lora_core: Core,
) -> None:
    c = lora_core
    allow(c.settings, "ink")
    await c.runtime.jobs.submit(with_loras(LoraChoice("ink"), prompt="a first fox"))
    assert c.worker.run_until_empty() == 1  # the worker now holds a local copy of ink
    job, _ = await c.runtime.jobs.submit(with_loras(LoraChoice("ink")))
    forget("ink", LoraStore(_engine(c.settings)), build_blobs(c.settings))
    c.worker.run_until_empty()
    failed = await c.runtime.jobs.get(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert "removed from the allow-list" in (failed.error_message or "")
    assert len(c.engine.calls) == 1


def test_the_bytes_of_an_adapter_stay_while_another_name_holds_them(
    lora_core: Core,
) -> None:
    settings = lora_core.settings
    one = allow(settings, "one")
    two = allow(settings, "two")  # the same file under a second name
    assert one.digest == two.digest
    blobs = build_blobs(settings)
    store = LoraStore(_engine(settings))
    forget("one", store, blobs)
    assert blobs.get(two.blob_key) is not None
    forget("two", store, blobs)
    assert blobs.get(two.blob_key) is None


@pytest.mark.parametrize(("new", "words"), [
    (NewAdapter("Bad Name", "x", "flux2-klein-4b"), "must be 1-64 of a-z"),
    (NewAdapter("ink", "x", "no-such-backend"), "no backend 'no-such-backend'"),
    (NewAdapter("ink", "x", "flux2-klein-4b", scale=9.0), r"--scale must be -4\.\.4"),
    (NewAdapter("taken", "x", "flux2-klein-4b"), "an adapter named 'taken' exists"),
    (NewAdapter("ink", "x", "flux2-klein-4b", aliases=("taken",)), "already names an adapter"),
])
def test_the_allow_list_refuses_a_bad_entry_before_reading_any_file(
    lora_core: Core, new: NewAdapter, words: str,
) -> None:
    allow(lora_core.settings, "taken")
    catalog = catalog_of(lora_core.settings)
    with pytest.raises(ValueError, match=words):
        check_new(new, catalog, LoraStore(_engine(lora_core.settings)))


@pytest.mark.parametrize("data", [
    b"\x80\x04\x95pickled checkpoint",  # a pickle: never parsed
    b"PK\x03\x04 a zip (torch.save)",
    (4_000_000_000).to_bytes(8, "little") + b"{}",  # a header length past the file
    b"",
])
def test_only_safetensors_bytes_are_admitted(lora_core: Core, data: bytes) -> None:
    settings = lora_core.settings
    store = LoraStore(_engine(settings))
    new = NewAdapter("ink", "/adapters/ink.ckpt", "flux2-klein-4b")
    backend = check_new(new, catalog_of(settings), store)
    with pytest.raises(ValueError, match=r"is not a \.safetensors file"):
        admit(new, data, backend, stub_check, store, build_blobs(settings), None)
    assert store.list() == []
