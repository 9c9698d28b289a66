"""Each dialect as its clients speak it on the wire: how a key is sent, the smallest generation
request, how a job is polled and cancelled, and how an error reply reads. One config per
dialect, shared by the in-process edge suite (tests/edge, over httpx or Starlette's test
client) and the SDK contract suite (tests/dialects/test_contract.py, for its raw checks), the
way diffusers' tester mixins share a pipeline's config across its tests.

The requests are made against the test catalog's small sizes (tests/server_harness.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class Reply(Protocol):
    """httpx.Response and Starlette's test client response alike."""

    status_code: int
    headers: Any

    def json(self) -> Any: ...


class Client(Protocol):
    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Call:
    """One HTTP request: what a client of the dialect sends."""

    method: str
    path: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def send(self, client: Client) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers, "params": self.params}
        if self.json is not None:
            kwargs["json"] = self.json
        return client.request(self.method, self.path, **kwargs)


@dataclass(frozen=True)
class WireError:
    status: int
    code: str | None  # the dialect's error code (WaveSpeed: its HTTP code; Google: its status)
    parameter: str | None
    message: str


class Wire:
    """A dialect's wire. `job_id` reads the id a client polls by from a submission's reply."""

    name: ClassVar[str]
    polls: ClassVar[bool] = True  # has a route that reads a job back
    cancels: ClassVar[bool] = False

    def keyed(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key is not None else {}

    def generate(self, key: str | None, **fields: Any) -> Call:
        """The smallest synchronous generation."""
        raise NotImplementedError

    def submit(self, key: str | None) -> Call:
        """A generation the server acknowledges before it runs (the sync one where the dialect
        has no other)."""
        return self.generate(key)

    def job_id(self, reply: Reply) -> str:
        raise NotImplementedError

    def poll(self, key: str | None, job_id: str) -> Call:
        raise NotImplementedError

    def cancel(self, key: str | None, job_id: str) -> Call:
        raise NotImplementedError

    def bad_parameter(self, key: str | None) -> tuple[Call, str]:
        """A request with one bad parameter, and that parameter as the client spells it."""
        raise NotImplementedError

    def error(self, reply: Reply) -> WireError:
        raise NotImplementedError

    def images(self, reply: Reply) -> int:
        """How many images a successful generation reply carries."""
        raise NotImplementedError


class Runware(Wire):
    name = "runware"

    def task(self, **fields: Any) -> dict[str, Any]:
        return {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()),
                "model": "google:2@3", "positivePrompt": "a red fox in snow", "width": 64,
                "height": 64, **fields}

    def generate(self, key: str | None, **fields: Any) -> Call:
        return Call("POST", "/v1", [self.task(**fields)], self.keyed(key))

    def submit(self, key: str | None) -> Call:
        return self.generate(key, deliveryMethod="async")

    def job_id(self, reply: Reply) -> str:
        return str(reply.json()["data"][0]["taskUUID"])

    def poll(self, key: str | None, job_id: str) -> Call:
        return Call("POST", "/v1", [{"taskType": "getResponse", "taskUUID": job_id}],
                    self.keyed(key))

    def bad_parameter(self, key: str | None) -> tuple[Call, str]:
        return self.generate(key, numberResults=21), "numberResults"

    def error(self, reply: Reply) -> WireError:
        first = reply.json()["errors"][0]
        return WireError(reply.status_code, first["code"], first.get("parameter"),
                         first["message"])

    def images(self, reply: Reply) -> int:
        return len(reply.json()["data"])


class WaveSpeed(Wire):
    name = "wavespeed"
    cancels = True
    model = "google/imagen4-fast"

    def generate(self, key: str | None, **fields: Any) -> Call:
        body = {"prompt": "a red fox in snow", "enable_sync_mode": True, **fields}
        return Call("POST", f"/api/v3/{self.model}", body, self.keyed(key))

    def submit(self, key: str | None) -> Call:
        return self.generate(key, enable_sync_mode=False)

    def job_id(self, reply: Reply) -> str:
        return str(reply.json()["data"]["id"])

    def poll(self, key: str | None, job_id: str) -> Call:
        return Call("GET", f"/api/v3/predictions/{job_id}/result", headers=self.keyed(key))

    def cancel(self, key: str | None, job_id: str) -> Call:
        return Call("POST", f"/api/v3/predictions/{job_id}/cancel", headers=self.keyed(key))

    def bad_parameter(self, key: str | None) -> tuple[Call, str]:
        return Call("POST", f"/api/v3/{self.model}", {"prompt": "x", "num_images": "two"},
                    self.keyed(key)), "num_images"

    def error(self, reply: Reply) -> WireError:
        body = reply.json()
        if body.get("data") and body["data"].get("status") == "failed":  # refused as a task
            data = body["data"]
            return WireError(reply.status_code, str(data["code"]), None, data["error"])
        return WireError(reply.status_code, str(body["code"]), None, body["message"])

    def images(self, reply: Reply) -> int:
        return len(reply.json()["data"]["outputs"])


class OpenAI(Wire):
    name = "openai"
    polls = False
    model = "google/imagen-4.0-fast-generate-001"

    def generate(self, key: str | None, **fields: Any) -> Call:
        body = {"model": self.model, "prompt": "a red fox in snow", "size": "64x64", **fields}
        return Call("POST", "/v1/images/generations", body, self.keyed(key))

    def job_id(self, reply: Reply) -> str:
        return str(reply.headers["x-easel-job-id"])

    def bad_parameter(self, key: str | None) -> tuple[Call, str]:
        return self.generate(key, n=9), "n"

    def error(self, reply: Reply) -> WireError:
        error = reply.json()["error"]
        return WireError(reply.status_code, error["code"], error["param"], error["message"])

    def images(self, reply: Reply) -> int:
        return len(reply.json()["data"])


class Google(Wire):
    """The Gemini API's :predict, with an API key."""

    name = "google"
    polls = False
    model = "imagen-4.0-fast-generate-001"
    base = "/v1beta/models"

    def keyed(self, key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": key} if key is not None else {}

    def generate(self, key: str | None, **parameters: Any) -> Call:
        body = {"instances": [{"prompt": "a red fox in snow"}],
                "parameters": {"sampleCount": 1, **parameters}}
        return Call("POST", f"{self.base}/{self.model}:predict", body, self.keyed(key))

    def job_id(self, reply: Reply) -> str:
        return str(reply.headers["x-easel-job-id"])

    def bad_parameter(self, key: str | None) -> tuple[Call, str]:
        return self.generate(key, sampleCount=9), "parameters.sampleCount"

    def error(self, reply: Reply) -> WireError:
        error = reply.json()["error"]
        violations = [v["field"] for d in error.get("details", [])
                      for v in d.get("fieldViolations", [])]
        return WireError(reply.status_code, error["status"],
                         violations[0] if violations else None, error["message"])

    def images(self, reply: Reply) -> int:
        return len(reply.json()["predictions"])


class Vertex(Google):
    """Vertex AI's :predict (google-genai 2.x/3.x), with an OAuth token's place: a bearer."""

    name = "google-vertex"
    base = "/v1beta1/projects/p/locations/us-central1/publishers/google/models"

    def keyed(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key is not None else {}


class Easel(Wire):
    """easel's own API: the playground's and `easel jobs`'."""

    name = "easel"
    cancels = True

    def generate(self, key: str | None, **fields: Any) -> Call:
        body = {"model": "google:2@3", "prompt": "a red fox in snow", **fields}
        return Call("POST", "/easel/jobs", body, self.keyed(key))

    def job_id(self, reply: Reply) -> str:
        return str(reply.json()["id"])

    def poll(self, key: str | None, job_id: str) -> Call:
        return Call("GET", f"/easel/jobs/{job_id}", headers=self.keyed(key))

    def cancel(self, key: str | None, job_id: str) -> Call:
        return Call("POST", f"/easel/jobs/{job_id}/cancel", headers=self.keyed(key))

    def bad_parameter(self, key: str | None) -> tuple[Call, str]:
        return self.generate(key, num_images=99), "num_images"

    def error(self, reply: Reply) -> WireError:
        error = reply.json()["error"]
        return WireError(reply.status_code, error["code"], error["parameter"], error["message"])

    def images(self, reply: Reply) -> int:
        return int(reply.json()["images"])


WIRES: tuple[Wire, ...] = (Runware(), WaveSpeed(), OpenAI(), Google(), Vertex(), Easel())
