"""Runware REST on /v1, in-process: results, async polling rules, idempotency, errors naming
parameters, keys, commercial-only."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.edge.conftest import KEY, Edge
from tests.server_harness import SMALL_SIZES, inference, new_uuid

IMAGE_KEYS = ("URL", "Base64Data", "DataURI")


def test_sync_result_items(edge: Edge) -> None:
    task = inference(numberResults=2, includeCost=True, seed=42)
    response = edge.runware([task])
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body
    items = body["data"]
    assert len(items) == 2 and len({i["imageUUID"] for i in items}) == 2
    for item, seed in zip(items, (42, 43), strict=True):
        assert item["taskType"] == "imageInference" and item["taskUUID"] == task["taskUUID"]
        assert item["seed"] == seed and item["NSFWContent"] is False and item["cost"] == 0.02
        assert "code" not in item
        assert edge.client.get(item["imageURL"]).content[:3] == b"\xff\xd8\xff"


def test_output_types(edge: Edge) -> None:
    item = edge.runware([inference(outputType="base64Data", outputFormat="png")]).json()["data"][0]
    assert base64.b64decode(item["imageBase64Data"])[:4] == b"\x89PNG"
    assert "imageURL" not in item
    item = edge.runware([inference(outputType="dataURI", outputFormat="WEBP")]).json()["data"][0]
    assert item["imageDataURI"].startswith("data:image/webp;base64,")


def test_async_ack_and_get_response_rules(edge: Edge) -> None:
    task = inference(numberResults=3, deliveryMethod="async", webhookURL="https://example.com/h")
    ack = edge.runware([task]).json()
    assert ack == {"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"]}]}
    seen: list[list[dict[str, Any]]] = []
    items = edge.settle(task["taskUUID"])
    poll = edge.runware([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()
    seen.append(poll["data"])
    assert len(items) == 3
    assert [i["imageUUID"] for i in items] == [i["imageUUID"] for i in seen[0]]  # stable ids
    assert all(i["status"] == "success" and i["imageURL"] for i in items)


def test_pending_items_carry_image_uuid_and_no_outputs(edge: Edge) -> None:
    # A job big enough to still be queued or running when polled right after submission.
    tasks = [inference(deliveryMethod="async", numberResults=8, webhookURL="https://x.io/h")
             for _ in range(2)]
    edge.runware(tasks)
    body = edge.runware([{"taskType": "getResponse", "taskUUID": tasks[-1]["taskUUID"]}]).json()
    statuses = {item["status"] for item in body["data"]}
    assert len(body["data"]) == 8 and len(statuses) == 1  # all images turn success together
    for item in body["data"]:
        assert item["taskType"] == "imageInference" and item["imageUUID"]
        if item["status"] == "processing":
            assert not any(k.endswith(IMAGE_KEYS) for k in item)
    for task in tasks:
        edge.settle(task["taskUUID"])


def test_same_task_uuid_same_parameters_returns_the_same_task(edge: Edge) -> None:
    task = inference(numberResults=2)
    first = edge.runware([task]).json()["data"]
    again = edge.runware([task]).json()["data"]
    assert [i["imageUUID"] for i in first] == [i["imageUUID"] for i in again]
    assert edge.db("SELECT count(*) FROM jobs WHERE task_id = ?", task["taskUUID"]) == [(1,)]


def test_same_task_uuid_other_parameters_is_a_conflict(edge: Edge) -> None:
    task = inference()
    edge.runware([task])
    response = edge.runware([{**task, "positivePrompt": "a blue whale"}])
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert error["code"] == "conflictTaskUUID" and error["parameter"] == "taskUUID"
    assert error["taskUUID"] == task["taskUUID"] and error["taskType"] == "imageInference"


BAD_TASKS = [
    ({"positivePrompt": "a"}, "invalidPositivePrompt", "positivePrompt"),
    ({"positivePrompt": "x" * 3001}, "invalidPositivePrompt", "positivePrompt"),
    ({"positivePrompt": None}, "missingPositivePrompt", "positivePrompt"),
    ({"positivePrompt": 5}, "invalidPositivePrompt", "positivePrompt"),
    ({"model": "google:9@9"}, "unknownModel", "model"),
    ({"width": 63}, "invalidWidth", "width"),
    ({"width": 48, "height": 48}, "invalidHeight", "height"),
    ({"height": None}, "missingHeight", "height"),
    ({"numberResults": 0}, "invalidNumberResults", "numberResults"),
    ({"numberResults": 21}, "invalidNumberResults", "numberResults"),
    ({"numberResults": "2"}, "invalidNumberResults", "numberResults"),
    ({"numberResults": 1.5}, "invalidNumberResults", "numberResults"),
    ({"outputType": "PNG"}, "unsupportedOutputType", "outputType"),
    ({"outputFormat": "GIF"}, "unsupportedOutputFormat", "outputFormat"),
    ({"outputQuality": 19}, "invalidOutputQuality", "outputQuality"),
    ({"outputQuality": 100}, "invalidOutputQuality", "outputQuality"),
    ({"deliveryMethod": "stream"}, "unsupportedDeliveryMethod", "deliveryMethod"),
    ({"ttl": 59}, "invalidTtl", "ttl"),
    ({"ttl": 120, "outputType": "base64Data"}, "invalidTtl", "ttl"),
    ({"includeCost": "yes"}, "invalidIncludeCost", "includeCost"),
    ({"seed": -1}, "invalidSeed", "seed"),
    ({"seed": 2**40}, "invalidSeed", "seed"),
    ({"safety": {"mode": "paranoid"}}, "invalidSafety", "safety"),
    ({"safety": "on"}, "invalidSafety", "safety"),
    ({"webhookURL": "ftp://x"}, "invalidWebhookURL", "webhookURL"),
    ({"uploadEndpoint": "not a url"}, "invalidUploadEndpoint", "uploadEndpoint"),
    ({"taskUUID": "not-a-uuid"}, "invalidTaskUUID", "taskUUID"),
    ({"taskUUID": None}, "missingTaskUUID", "taskUUID"),
    ({"steps": 17}, "invalidSteps", "steps"),  # google:2@3 runs FLUX.1-schnell: 1..16
    ({"steps": "4"}, "invalidSteps", "steps"),
    ({"CFGScale": 3.0}, "unsupportedCFGScale", "CFGScale"),  # schnell is guidance-distilled
    ({"scheduler": "DDIM"}, "invalidScheduler", "scheduler"),
    ({"lora": [{"model": "civitai:1@2"}]}, "invalidLora", "lora[0]"),
]


@pytest.mark.parametrize(("fields", "code", "parameter"), BAD_TASKS)
def test_invalid_fields_name_the_parameter(
    edge: Edge, fields: dict[str, Any], code: str, parameter: str
) -> None:
    task = {k: v for k, v in inference(**fields).items() if v is not None}
    response = edge.runware([task])
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert (error["code"], error["parameter"]) == (code, parameter), error
    assert error["taskType"] == "imageInference" and error["message"]


@pytest.mark.parametrize(("fields", "parameter", "words"), [
    # 60 s is Runware's floor, refused by its own rule: the server's bound is stated alone.
    ({"ttl": 2592001}, "ttl", "ttl must be at most 2592000 seconds, got 2592001"),
    ({"webhookURL": "notaurl"}, "webhookURL", "webhookURL has no scheme"),
    ({"webhookURL": "ftp://x"}, "webhookURL", "webhookURL must use http or https, not 'ftp'"),
])
def test_a_refusal_says_what_is_wrong(
    edge: Edge, fields: dict[str, Any], parameter: str, words: str
) -> None:
    error = edge.runware([inference(**fields)]).json()["errors"][0]
    assert error["parameter"] == parameter and words in error["message"], error


def test_negative_prompt_only_where_the_model_allows_it(edge: Edge) -> None:
    for model in ("google:2@1", "google:2@3"):  # Imagen 4 ids; FLUX.2 [klein] has no CFG
        error = edge.runware([inference(model=model, negativePrompt="blurry")]).json()
        assert error["errors"][0]["code"] == "unsupportedNegativePrompt"
        assert error["errors"][0]["parameter"] == "negativePrompt"
    assert edge.runware([inference(model="easel/mini", negativePrompt="blurry")]).status_code == 200


@pytest.mark.parametrize(("body", "code", "status"), [
    (b"{not json", "invalidJSON", 400),
    (b'{"taskType": "ping"}', "invalidPayload", 400),
    (b"[]", "invalidPayload", 400),
    (b'[{"taskType": "textInference"}]', "invalidTaskType", 400),
    (b'[{"positivePrompt": "x"}]', "missingTaskType", 400),
    (b"[5]", "invalidTask", 400),
    (b"[" + b'"x",' * 400_000 + b'"x"]', "payloadTooLarge", 413),
])
def test_malformed_bodies(make_edge: Callable[..., Edge], body: bytes, code: str,
                          status: int) -> None:
    edge = make_edge(max_body_bytes=1_000_000)
    response = edge.client.post("/v1/", content=body, headers={
        "content-type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code


def test_one_bad_task_does_not_stop_the_good_ones(edge: Edge) -> None:
    good, bad = inference(), inference(width=1)
    response = edge.runware([good, bad, {"taskType": "ping", "ping": True}])
    assert response.status_code == 200
    body = response.json()
    assert {i["taskType"] for i in body["data"]} == {"imageInference", "ping"}
    assert body["errors"][0]["taskUUID"] == bad["taskUUID"]


def test_unknown_task_in_get_response(edge: Edge) -> None:
    response = edge.runware([{"taskType": "getResponse", "taskUUID": new_uuid()}])
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "taskNotFound"


def test_api_keys(make_edge: Callable[..., Edge]) -> None:
    srv = make_edge(api_keys="k1,k2")
    assert srv.runware([inference()], key=None).json()["errors"][0]["code"] == "missingApiKey"
    bad = srv.runware([inference()], key="nope")
    assert bad.status_code == 401 and bad.json()["errors"][0]["code"] == "invalidApiKey"
    assert srv.runware([inference()], key="k2").status_code == 200
    in_body = srv.runware([{"taskType": "authentication", "apiKey": "k1"}, inference()], key=None)
    assert in_body.status_code == 200 and len(in_body.json()["data"]) == 1
    # Both the header and an authentication task: they must agree, never one passed over.
    same = srv.runware([{"taskType": "authentication", "apiKey": "k2"}, inference()], key="k2")
    assert same.status_code == 200
    wrong = srv.runware([{"taskType": "authentication", "apiKey": "nope"}, inference()],
                        key="k2")
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["code"] == "invalidApiKey"
    other = srv.runware([{"taskType": "authentication", "apiKey": "k1"}, inference()], key="k2")
    error = other.json()["errors"][0]
    assert other.status_code == 400 and error["parameter"] == "apiKey", error


def test_info_lists_each_tier_with_its_licence_and_stand_in(edge: Edge) -> None:
    info = edge.client.get("/easel/info").json()
    tiers = {t["tier"]: t for t in info["tiers"]}
    assert tiers["fast"]["source"] == "black-forest-labs/FLUX.2-klein-4B"
    assert tiers["ultra"]["source"] == "Qwen/Qwen-Image"
    for tier in ("fast", "standard", "ultra"):
        licence = tiers[tier]["license"]
        assert (licence["id"], licence["commercial"]) == ("apache-2.0", True)
        assert tiers[tier]["weights"] == "absent" and tiers[tier]["stand_in"]
    assert info["commercial_only"] is False and info["version"]


def test_commercial_only_refuses_a_non_commercial_tier_in_runwares_shape(
    make_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    catalog = tmp_path / "dev.toml"
    catalog.write_text(SMALL_SIZES + '[tiers.standard]\nbackend = "flux-dev"\n')
    srv = make_edge(small=False, catalog_file=catalog, commercial_only="1")
    refused = srv.runware([inference(model="google:2@1")])
    assert refused.status_code == 400, refused.text
    error = refused.json()["errors"][0]
    assert error["parameter"] == "model"
    assert "FLUX.1 [dev] Non-Commercial License" in error["message"]
    assert "commercial_only" in error["message"]
    assert srv.runware([inference(model="google:2@3")]).status_code == 200  # Apache-2.0 tiers run
