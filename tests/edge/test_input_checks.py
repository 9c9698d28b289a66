"""The content check reads input images too: an image it would withhold as an output is refused
before any job exists, naming the input, in each dialect's shape; Runware checks inputs when
`safety.checkInputs` asks. Real NudeNet, on the offline pictures of tests/safety."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.core.test_loras import PRESENT
from tests.edge.conftest import KEY, Edge
from tests.edge.test_images_in import data_uri, png
from tests.fakes import FakeEngine
from tests.safety.pictures import picture
from tests.server_harness import inference

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def edge(make_edge: Callable[..., Edge], tmp_path: Path) -> Edge:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    return make_edge(FakeEngine(), catalog_file=catalog)


def photo(name: str) -> bytes:
    return png(picture(name).resize((512, 512)))


def test_openai_refuses_a_sexual_input_and_takes_a_cup_of_coffee(edge: Edge) -> None:
    def send(name: str) -> object:
        return edge.client.post("/v1/images/edits", headers=AUTH, data={
            "prompt": "a red fox", "model": "imagen-4.0-generate-001"},
            files=[("image", ("in.png", photo(name), "image/png"))])

    refused = send("torso").json()["error"]
    assert (refused["param"], refused["code"]) == ("image", "content_policy_violation")
    assert "refused by the content check (sexual content)" in refused["message"]
    assert not edge.engine.calls
    assert send("coffee").status_code == 200


def test_google_refuses_a_person_when_people_are_not_allowed(edge: Edge) -> None:
    data = base64.b64encode(photo("astronaut")).decode()
    body = {"instances": [{"prompt": "a red fox", "referenceImages": [
        {"referenceType": "REFERENCE_TYPE_RAW", "referenceImage": {"bytesBase64Encoded": data}}]}],
        "parameters": {"sampleCount": 1, "personGeneration": "dont_allow"}}
    path = ("/v1beta1/projects/p/locations/l/publishers/google/models/"
            "imagen-3.0-capability-001:predict")
    reply = edge.client.post(path, json=body, headers=AUTH)
    assert reply.status_code == 400, reply.text
    assert "a person, and people are not allowed" in reply.json()["error"]["message"]


def test_runware_checks_inputs_only_when_asked(edge: Edge) -> None:
    task = inference(model="google:2@1", seedImage=data_uri(photo("torso")))
    assert "errors" not in edge.runware([task]).json()  # Runware flags outputs, never inputs
    asked = inference(model="google:2@1", seedImage=data_uri(photo("torso")),
                      safety={"checkInputs": True})
    error = edge.runware([asked]).json()["errors"][0]
    assert (error["code"], error["parameter"]) == ("contentPolicyViolation", "seedImage")
