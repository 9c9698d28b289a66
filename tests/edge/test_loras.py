"""LoRA adapters in each dialect's own shape, over HTTP in-process (fake engine): Runware's
`lora`, easel's `loras` and its catalog, OpenAI's `loras` (extra_body). Real pixels:
tests/edge/test_loras_e2e.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.core.test_loras import PRESENT, allow
from tests.edge.conftest import KEY, Edge
from tests.server_harness import inference

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    built = make_edge(small=False, catalog_file=catalog)
    allow(built.settings, "ink", scale=0.75, aliases=("civitai:132942@146296",))
    allow(built.settings, "zed", base="z-image-turbo", content=2.0)
    return built


def test_runware_runs_a_task_with_an_air_id_and_a_weight(edge: Edge) -> None:
    task = inference(lora=[{"model": "civitai:132942@146296", "weight": 0.5}], outputType="URL")
    reply = edge.runware([task])
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"][0]["imageURL"]
    (call,) = edge.engine.calls
    assert [(a.name, a.weight) for a in call.adapters] == [("ink", 0.5)]


def test_runware_without_a_weight_runs_the_adapters_default(edge: Edge) -> None:
    assert edge.runware([inference(lora=[{"model": "ink"}])]).status_code == 200
    assert [(a.name, a.weight) for a in edge.engine.calls[0].adapters] == [("ink", 0.75)]


@pytest.mark.parametrize(("lora", "code", "parameter", "words"), [
    ([{"model": "nope"}], "invalidLora", "lora[0]", "no adapter 'nope'"),
    ([{"model": "zed"}], "invalidLora", "lora[0]", "made for z-image-turbo"),
    ([{"model": "ink", "weight": -4.5}], "invalidLora", "lora[0]", "-4..4, got -4.5"),
    ([{"model": "ink", "weight": "strong"}], "invalidLora", "lora", "lora.0.weight"),
    ([{"model": "ink", "scale": 1}], "invalidLora", "lora", "has no field 'scale'"),
    ([{"weight": 1}], "invalidLora", "lora", "lora.0.model"),
    ([{"model": "ink"}] * 5, "invalidLora", "lora", "at most 4 per request"),
    ("ink", "invalidLora", "lora", "lora"),
])
def test_runware_refuses_a_bad_lora_in_its_own_shape(
    edge: Edge, lora: Any, code: str, parameter: str, words: str,
) -> None:
    reply = edge.runware([inference(lora=lora)])
    assert reply.status_code == 400, reply.text
    (error,) = reply.json()["errors"]
    assert (error["code"], error["parameter"]) == (code, parameter), error
    assert words in error["message"]
    assert not edge.engine.calls


def test_easel_runs_loras_shows_them_in_the_job_and_lists_them_in_the_catalog(
    edge: Edge,
) -> None:
    reply = edge.client.post("/easel/jobs", headers=AUTH, json={
        "model": "google/imagen4-fast", "prompt": "a fox", "loras": [{"name": "ink",
                                                                      "weight": 1.25}]})
    assert reply.status_code == 202, reply.text
    job = edge.wait(reply.json()["job"])
    view = edge.client.get(f"/easel/jobs/{job.id}", headers=AUTH).json()
    assert view["status"] == "completed"
    assert [(lora["name"], lora["weight"]) for lora in view["loras"]] == [("ink", 1.25)]
    catalog = edge.client.get("/easel/models", headers=AUTH).json()
    by_tier = {tier["tier"]: [lora["name"] for lora in tier["loras"]]
               for tier in catalog["tiers"]}
    assert by_tier["fast"] == ["ink"] and by_tier["standard"] == ["zed"]
    assert by_tier["ultra"] == []
    fast = next(tier for tier in catalog["tiers"] if tier["tier"] == "fast")
    assert fast["loras"][0]["default_weight"] == 0.75
    assert fast["loras"][0]["aliases"] == ["civitai:132942@146296"]


def test_easel_refuses_a_bad_lora_naming_it(edge: Edge) -> None:
    reply = edge.client.post("/easel/jobs", headers=AUTH, json={
        "model": "google/imagen4", "prompt": "a fox", "loras": [{"name": "ink"}]})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["parameter"] == "loras[0]" and "made for flux2-klein-4b" in error["message"]


def test_openai_takes_loras_in_its_body_and_refuses_bad_ones_in_its_shape(edge: Edge) -> None:
    body = {"model": "imagen-4.0-fast-generate-001", "prompt": "a fox", "size": "1024x1024",
            "response_format": "b64_json"}
    good = edge.client.post("/v1/images/generations", headers=AUTH,
                            json={**body, "loras": [{"name": "ink", "weight": 2}]})
    assert good.status_code == 200, good.text
    assert [(a.name, a.weight) for a in edge.engine.calls[0].adapters] == [("ink", 2.0)]
    bad = edge.client.post("/v1/images/generations", headers=AUTH,
                           json={**body, "loras": [{"name": "oil"}]})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["param"] == "loras[0]" and "no adapter 'oil'" in error["message"]


def test_a_runware_spelling_in_an_easel_lora_is_named_without_a_circular_hint(
    edge: Edge,
) -> None:
    # `model` is a field of the body, not of an adapter: "did you mean 'model'?" sent the
    # client in a circle; the field it lacks is named instead.
    reply = edge.client.post("/easel/jobs", headers=AUTH, json={
        "model": "google/imagen4-fast", "prompt": "a fox", "loras": [{"model": "ink"}]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == {
        "code": "missing", "parameter": "loras[0].name", "message": "loras[0].name is required"}


def test_an_image_made_with_an_adapter_records_it(edge: Edge) -> None:
    reply = edge.runware([inference(lora=[{"model": "ink", "weight": 0.5}], outputType="URL",
                                    outputFormat="PNG")])
    url = httpx.URL(reply.json()["data"][0]["imageURL"])
    data = edge.client.get(url.path).content
    assert b'"name": "ink"' in data or b'"name":"ink"' in data


def test_runware_model_search_lists_the_allow_listed_adapters_as_loras(edge: Edge) -> None:
    reply = edge.runware([{"taskType": "modelSearch", "category": "lora"}])
    assert reply.status_code == 200, reply.text
    (page,) = reply.json()["data"]
    by_air = {entry["air"]: entry for entry in page["results"]}
    assert set(by_air) == {"civitai:132942@146296", "zed"}
    ink = by_air["civitai:132942@146296"]
    assert (ink["name"], ink["category"], ink["architecture"], ink["defaultWeight"]) == (
        "ink", "lora", "flux2", 0.75)
    checkpoints = edge.runware([{"taskType": "modelSearch", "category": "checkpoint"}])
    assert all(e["category"] == "checkpoint" for e in checkpoints.json()["data"][0]["results"])
