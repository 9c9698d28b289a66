"""/openapi.json documents what each dialect's parser accepts, no more and no less: each route
that reads a JSON body documents the schema of the very model its parser validates with; every
documented field is taken by the parser (never refused as unknown), and a field the document
does not list is refused by name."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from easel.api.dialects.easel import translate as easel
from easel.api.dialects.easel.schemas import JobInput
from easel.api.dialects.google import translate as google
from easel.api.dialects.google.schemas import PredictRequest
from easel.api.dialects.openai import translate as openai
from easel.api.dialects.openai.schemas import ImagesGenerateRequest
from easel.api.dialects.runware.schemas import (
    ImageInferenceTask,
    ModelSearchTask,
    RunwareError,
    UpscaleTask,
    parse_image_inference,
    parse_model_search,
    parse_upscale,
    tasks_schema,
)
from easel.api.dialects.runware.tasks import TASK_TYPES
from easel.api.dialects.wavespeed import translate as wavespeed
from easel.api.dialects.wavespeed.schemas import ImagenInput
from easel.api.openapi import model_schema
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.submission import Caller
from tests.edge.conftest import Edge

CALLER = Caller("schemas")
Parse = Callable[[dict[str, Any]], object]


def _runware(body: dict[str, Any]) -> object:
    return parse_image_inference(body)


# route, method, the schema its parser validates with, the parser, and a minimal valid body
DIALECTS: list[tuple[str, str, dict[str, Any], Parse, dict[str, Any]]] = [
    ("/api/v3/{model_id}", "post", model_schema(ImagenInput),
     lambda b: wavespeed.to_submission("google/imagen4", b, None, CALLER), {"prompt": "a fox"}),
    ("/v1/images/generations", "post", model_schema(ImagesGenerateRequest),
     lambda b: openai.to_submission(b, CALLER), {"prompt": "a fox"}),
    ("/v1beta/models/{model_action}", "post", model_schema(PredictRequest),
     lambda b: google.to_submission("imagen-4.0-generate-001", b, 1, CALLER),
     {"instances": [{"prompt": "a fox"}]}),
    ("/easel/jobs", "post", model_schema(JobInput), lambda b: easel.to_submission(b, CALLER),
     {"model": "google:2@3", "prompt": "a fox"}),
]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from easel.runtime.build import build_app
    from tests.edge.conftest import edge_settings

    app = build_app(edge_settings(tmp_path_factory.mktemp("schemas"), run_worker=False))
    schema: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    return schema


def _documented(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    schema: dict[str, Any] = body["schema"]
    return schema


@pytest.mark.parametrize(("path", "method", "parsed", "parse", "minimal"), DIALECTS,
                         ids=[d[0] for d in DIALECTS])
def test_each_route_documents_its_parsers_model_and_the_parser_takes_every_field(
    document: dict[str, Any], path: str, method: str, parsed: dict[str, Any], parse: Parse,
    minimal: dict[str, Any],
) -> None:
    documented = _documented(document, path, method)
    assert documented == without_null_defaults(parsed)
    for name, field in documented["properties"].items():
        body = {**minimal, name: sample(field)}
        assert not refused_as_unknown(parse, body, name), (path, name, body)
    assert refused_as_unknown(parse, {**minimal, "frobnicate": 1}, "frobnicate")


def test_runware_documents_every_task_its_parser_reads(document: dict[str, Any]) -> None:
    assert _documented(document, "/v1", "post") == without_null_defaults(tasks_schema())
    inference = model_schema(ImageInferenceTask)
    minimal = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": "m",
               "positivePrompt": "a fox"}
    for name, field in inference["properties"].items():
        body = {**minimal, name: sample(field)}
        assert not refused_as_unknown(_runware, body, name), (name, body)
    assert refused_as_unknown(_runware, {**minimal, "frobnicate": 1}, "frobnicate")
    # steps, CFGScale, scheduler and the legacy checkNsfw are read, so they are documented
    assert {"steps", "CFGScale", "scheduler", "checkNsfw", "checkNSFW"} <= set(
        inference["properties"])
    task_types = {name for branch in tasks_schema()["items"]["anyOf"]
                  for name in branch["properties"]["taskType"].get(
                      "enum", [branch["properties"]["taskType"].get("const")])}
    assert task_types == set(TASK_TYPES)  # every task the runner takes, and no other
    upscale = model_schema(UpscaleTask)
    minimal = {"taskType": "upscale", "taskUUID": str(uuid.uuid4()), "inputImage": "x"}
    for name, field in upscale["properties"].items():
        body = {**minimal, name: sample(field)}
        assert not refused_as_unknown(parse_upscale, body, name), (name, body)
    assert refused_as_unknown(parse_upscale, {**minimal, "frobnicate": 1}, "frobnicate")
    search = model_schema(ModelSearchTask)
    minimal = {"taskType": "modelSearch", "taskUUID": str(uuid.uuid4())}
    for name, field in search["properties"].items():
        body = {**minimal, name: sample(field)}
        assert not refused_as_unknown(parse_model_search, body, name), (name, body)
    assert refused_as_unknown(parse_model_search, {**minimal, "frobnicate": 1}, "frobnicate")


def test_the_served_document_is_the_apps(edge: Edge, document: dict[str, Any]) -> None:
    assert edge.client.get("/openapi.json").json()["paths"].keys() == document["paths"].keys()


def without_null_defaults(schema: Any) -> Any:
    """A schema as /openapi.json serves it: FastAPI leaves out `"default": null`."""
    if isinstance(schema, dict):
        return {k: without_null_defaults(v) for k, v in schema.items()
                if not (k == "default" and v is None)}
    if isinstance(schema, list):
        return [without_null_defaults(item) for item in schema]
    return schema


def refused_as_unknown(parse: Parse, body: dict[str, Any], name: str) -> bool:
    """Whether the parser refuses `name` as a field it does not take (another refusal, of a
    value it takes but finds wrong, is not that)."""
    try:
        parse(body)
    except RunwareError as exc:
        return exc.code == "unsupportedParameter" and exc.parameter == name
    except EaselError as exc:
        return exc.kind is ErrorKind.UNSUPPORTED and exc.parameter == name and \
            "is not a parameter easel accepts" in exc.message
    return False


def sample(schema: dict[str, Any]) -> Any:
    """A value the schema allows: its default, first example or first enum value, else one of
    its type (the first branch of an anyOf that is not null)."""
    if schema.get("default") is not None:
        return schema["default"]
    for key in ("examples", "enum"):
        if schema.get(key):
            return schema[key][0]
    if "const" in schema:
        return schema["const"]
    if "anyOf" in schema:
        branch = next(b for b in schema["anyOf"] if b.get("type") != "null")
        return sample(branch)
    kind = schema.get("type")
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return False
    if kind == "array":
        return [sample(schema.get("items", {}))] if schema.get("minItems") else []
    if kind == "object":
        return {name: sample(field) for name, field in schema.get("properties", {}).items()
                if name in schema.get("required", [])}
    return "x"
