"""One contract every dialect meets, driven through each official SDK against a live server:
auth, its error shape, n > 1, seeds that reproduce, each output format, async and sync, and
idempotency where the dialect has ids."""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from PIL import Image

from tests.dialects.conftest import KEY, run_client
from tests.server_harness import Server


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def same_image(a: bytes, b: bytes) -> bool:
    """The same picture: a batched run may round a few pixels one uint8 level away from a
    single-image run of the same seed (docs/architecture.md, Determinism)."""
    import numpy as np

    left, right = (np.asarray(Image.open(io.BytesIO(d)).convert("RGB"), dtype=int) for d in (a, b))
    return left.shape == right.shape and int(np.abs(left - right).max()) <= 1


def image_format(data: bytes) -> str:
    return str(Image.open(io.BytesIO(data)).format).lower()


def fetch(ref: str) -> bytes:
    if ref.startswith("data:"):
        return base64.b64decode(ref.split(",", 1)[1])
    response = httpx.get(ref, timeout=30)
    response.raise_for_status()
    return response.content


class Dialect:
    name = ""
    sdk = ""
    formats: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("sync",)
    has_ids = False

    def __init__(self, srv: Server, python: Path) -> None:
        self.srv = srv
        self.python = python

    def generate(self, *, n: int = 1, seed: int | None = None, fmt: str | None = None,
                 mode: str = "sync", key: str = KEY) -> list[bytes]:
        raise NotImplementedError

    def refused_auth(self) -> None:
        raise NotImplementedError

    def refused_param(self) -> None:
        raise NotImplementedError


class WaveSpeed(Dialect):
    name, sdk = "wavespeed", "wavespeed"
    formats = ("jpeg", "png", "webp")
    modes = ("async", "sync")
    model = "google/imagen4-fast"

    def _run(self, body: dict[str, Any], mode: str = "async", key: str = KEY) -> Any:
        spec = {"url": self.srv.url, "key": key, "model": self.model, "input": body,
                "sync": mode == "sync"}
        return run_client(self.python, "wavespeed_client.py", spec)

    def generate(self, *, n: int = 1, seed: int | None = None, fmt: str | None = None,
                 mode: str = "sync", key: str = KEY) -> list[bytes]:
        body: dict[str, Any] = {"prompt": "a lighthouse at dusk", "num_images": n}
        if seed is not None:
            body["seed"] = seed
        if fmt is not None:
            body["output_format"] = fmt
        out = self._run(body, mode, key)
        assert out["ok"], out
        return [fetch(ref) for ref in out["outputs"]]

    def refused_auth(self) -> None:
        out = self._run({"prompt": "x"}, key="wrong")
        assert not out["ok"] and "HTTP 401" in out["error"]
        raw = httpx.post(f"{self.srv.url}/api/v3/{self.model}", json={"prompt": "x"})
        assert raw.status_code == 401 and raw.json()["code"] == 401 and raw.json()["message"]

    def refused_param(self) -> None:
        out = self._run({"prompt": "x", "resolution": "2k"})
        assert not out["ok"] and "Prediction failed" in out["error"]
        assert "resolution '2k' is not supported" in out["error"]


class OpenAIImages(Dialect):
    name, sdk = "openai", "openai"
    formats = ("png", "jpeg", "webp")
    has_ids = True
    model = "google/imagen-4.0-fast-generate-001"

    def _run(self, kwargs: dict[str, Any], key: str = KEY, **extra: Any) -> Any:
        spec = {"url": self.srv.url, "key": key,
                "kwargs": {"model": self.model, "prompt": "a lighthouse at dusk", **kwargs},
                **extra}
        return run_client(self.python, "openai_client.py", spec)

    def generate(self, *, n: int = 1, seed: int | None = None, fmt: str | None = None,
                 mode: str = "sync", key: str = KEY, **extra: Any) -> list[bytes]:
        kwargs: dict[str, Any] = {"n": n, "response_format": "b64_json"}
        if fmt is not None:
            kwargs["output_format"] = fmt
        if seed is not None:
            extra.setdefault("extra_body", {})["seed"] = seed
        out = self._run(kwargs, key, **extra)
        assert out["ok"], out
        return [base64.b64decode(item["b64_json"]) for item in out["response"]["data"]]

    def refused_auth(self) -> None:
        out = self._run({}, key="wrong")
        assert (out["status"], out["type"], out["code"]) == (
            401, "AuthenticationError", "invalid_api_key")

    def refused_param(self) -> None:
        out = self._run({"n": 9})
        assert (out["status"], out["type"], out["param"]) == (400, "BadRequestError", "n")
        raw = httpx.post(f"{self.srv.url}/v1/images/generations",
                         headers={"Authorization": f"Bearer {KEY}"},
                         json={"model": self.model, "prompt": "x", "n": 9}).json()
        assert raw["error"]["param"] == "n" and raw["error"]["type"] == "invalid_request_error"
        assert raw["statusCode"] == 400 and raw["path"] == "/v1/images/generations"
        assert raw["requestId"] and raw["timestamp"] and raw["message"] == raw["error"]["message"]

    def idempotent(self) -> None:
        key = str(uuid.uuid4())
        headers = {"Idempotency-Key": key}
        first = self._run({"response_format": "url"}, extra_headers=headers)
        again = self._run({"response_format": "url"}, extra_headers=headers)
        assert first["ok"] and again["ok"]
        assert first["response"]["data"] == again["response"]["data"]
        clash = self._run({"response_format": "url", "n": 2}, extra_headers=headers)
        assert (clash["status"], clash["type"], clash["param"]) == (
            409, "ConflictError", "Idempotency-Key")


class OpenAIImagesV1(OpenAIImages):
    """openai 1.x (on httpx, before 3.x moved to httpx2), still what many AIML users run."""

    name, sdk = "openai-1", "openai-1"


class OpenAIImagesV2(OpenAIImages):
    """The last openai 2.x."""

    name, sdk = "openai-2", "openai-2"


class Google(Dialect):
    """google-genai 1.x in Gemini API mode (an API key)."""

    name, sdk = "google", "google-genai"
    formats = ("png", "jpeg")
    model = "imagen-4.0-fast-generate-001"
    mode = "gemini"

    def _run(self, config: dict[str, Any], key: str = KEY) -> Any:
        spec = {"url": self.srv.url, "key": key, "model": self.model, "mode": self.mode,
                "prompt": "a lighthouse at dusk", "config": config}
        return run_client(self.python, "google_client.py", spec)

    def generate(self, *, n: int = 1, seed: int | None = None, fmt: str | None = None,
                 mode: str = "sync", key: str = KEY) -> list[bytes]:
        if seed is not None and self.mode == "gemini":
            # google-genai refuses `seed` in Gemini API mode (Vertex only): plain REST.
            params: dict[str, Any] = {"sampleCount": n, "seed": seed, "addWatermark": False}
            if fmt is not None:
                params["outputOptions"] = {"mimeType": f"image/{fmt}"}
            reply = httpx.post(
                f"{self.srv.url}/v1beta/models/{self.model}:predict",
                headers={"x-goog-api-key": key}, timeout=120,
                json={"instances": [{"prompt": "a lighthouse at dusk"}], "parameters": params},
            )
            assert reply.status_code == 200, reply.text
            return [base64.b64decode(p["bytesBase64Encoded"]) for p in reply.json()["predictions"]]
        config: dict[str, Any] = {"number_of_images": n}
        if seed is not None:
            config.update(seed=seed, add_watermark=False)
        if fmt is not None:
            config["output_mime_type"] = f"image/{fmt}"
        out = self._run(config, key)
        assert out["ok"], out
        return [base64.b64decode(image["b64"]) for image in out["images"]]

    def refused_auth(self) -> None:
        out = self._run({"number_of_images": 1}, key="wrong")
        # Google answers a bad API key with 400 INVALID_ARGUMENT, ErrorInfo API_KEY_INVALID.
        assert (out["code"], out["status"], out["type"]) == (400, "INVALID_ARGUMENT",
                                                             "ClientError")
        assert out["details"][0]["reason"] == "API_KEY_INVALID"

    def refused_param(self) -> None:
        out = self._run({"image_size": "2K"})
        assert (out["code"], out["status"]) == (400, "INVALID_ARGUMENT")
        assert "sampleImageSize" in out["message"]


class GoogleVertex(Google):
    """The newest google-genai (3.x), which generates images only in Vertex mode: it posts to
    /v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}:predict with a bearer
    token. Seeds go through the SDK here (Vertex accepts them)."""

    name, sdk = "google-vertex", "google-genai-3"
    mode = "vertex"

    def refused_auth(self) -> None:
        out = self._run({"number_of_images": 1}, key="wrong")
        assert (out["code"], out["status"], out["type"]) == (401, "UNAUTHENTICATED",
                                                             "ClientError")


class GoogleV2(GoogleVertex):
    """The last google-genai 2.x, which (as 3.x) generates images only in Vertex mode."""

    name, sdk = "google-2", "google-genai-2"


class WaveSpeedV1(WaveSpeed):
    """The last wavespeed 1.x."""

    name, sdk = "wavespeed-1", "wavespeed-1"


class Runware(Dialect):
    """Through runware-sdk over REST (its WebSocket path and the legacy SDK: tests/runware)."""

    name, sdk = "runware", "runware-sdk"
    formats = ("jpeg", "png", "webp")
    modes = ("async", "sync")
    has_ids = True
    script = Path(__file__).parents[1] / "runware" / "clients" / "sdk.py"
    wire_format: ClassVar[dict[str, str]] = {"jpeg": "JPG", "png": "PNG", "webp": "WEBP"}

    def _run(self, task: dict[str, Any], key: str = KEY) -> Any:
        args = {"transport": "rest", "url": f"{self.srv.url}/v1", "apiKey": key, "task": task}
        return run_client(self.python, str(self.script), args)

    def generate(self, *, n: int = 1, seed: int | None = None, fmt: str | None = None,
                 mode: str = "sync", key: str = KEY) -> list[bytes]:
        task: dict[str, Any] = {"numberResults": n, "deliveryMethod": mode, "outputType": "URL"}
        if seed is not None:
            task["seed"] = seed
        if fmt is not None:
            task["outputFormat"] = self.wire_format[fmt]
        out = self._run(task, key)
        assert "images" in out, out
        images = sorted(out["images"], key=lambda image: image["seed"])
        return [fetch(image["imageURL"]) for image in images]

    def refused_auth(self) -> None:
        out = self._run({}, key="wrong")
        # runware-sdk files "invalidApiKey" under its "auth" category.
        assert (out["error"]["code"], out["error"]["message"]) == ("auth", "invalid API key")
        raw = httpx.post(f"{self.srv.url}/v1", headers={"Authorization": "Bearer wrong"},
                         json=[{"taskType": "imageInference", "taskUUID": str(uuid.uuid4()),
                                "model": "google:2@3", "positivePrompt": "a fox",
                                "width": 64, "height": 64}])
        assert raw.status_code == 401
        assert raw.json()["errors"][0]["code"] == "invalidApiKey"

    def refused_param(self) -> None:
        out = self._run({"numberResults": 21})
        assert out["error"]["parameter"] == "numberResults", out
        raw = httpx.post(f"{self.srv.url}/v1", headers={"Authorization": f"Bearer {KEY}"},
                         json=[{"taskType": "imageInference", "taskUUID": str(uuid.uuid4()),
                                "model": "google:2@3", "positivePrompt": "a fox",
                                "width": 64, "height": 64, "numberResults": 21}])
        assert raw.status_code == 400
        error = raw.json()["errors"][0]
        assert error["parameter"] == "numberResults" and error["taskType"] == "imageInference"

    def idempotent(self) -> None:
        task_uuid = str(uuid.uuid4())
        first = self._run({"taskUUID": task_uuid, "deliveryMethod": "sync"})
        again = self._run({"taskUUID": task_uuid, "deliveryMethod": "sync"})
        assert [i["imageUUID"] for i in first["images"]] == [
            i["imageUUID"] for i in again["images"]]
        clash = httpx.post(f"{self.srv.url}/v1", headers={"Authorization": f"Bearer {KEY}"},
                           json=[{"taskType": "imageInference", "taskUUID": task_uuid,
                                  "model": "google:2@3", "positivePrompt": "another prompt",
                                  "width": 64, "height": 64, "deliveryMethod": "sync"}])
        assert clash.status_code == 409
        assert clash.json()["errors"][0]["code"] == "conflictTaskUUID"


# Each client's newest release and the last of each older major line (tests/sdk_venvs.py).
DIALECTS = [Runware, WaveSpeed, WaveSpeedV1, OpenAIImages, OpenAIImagesV2, OpenAIImagesV1,
            Google, GoogleV2, GoogleVertex]


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request: pytest.FixtureRequest, live: Server, sdks: dict[str, Path]) -> Dialect:
    cls: type[Dialect] = request.param
    return cls(live, sdks[cls.sdk])


def test_auth_is_required(dialect: Dialect) -> None:
    dialect.refused_auth()


def test_invalid_parameter_in_the_dialects_error_shape(dialect: Dialect) -> None:
    dialect.refused_param()


def test_several_images_and_seeds_that_reproduce(dialect: Dialect) -> None:
    first = dialect.generate(n=2, seed=1234)
    again = dialect.generate(n=2, seed=1234)
    assert len(first) == 2
    assert [pixels(i) for i in first] == [pixels(i) for i in again]
    assert pixels(first[0]) != pixels(first[1])  # seed s and s+1


def test_each_output_format(dialect: Dialect) -> None:
    for fmt in dialect.formats:
        (image,) = dialect.generate(fmt=fmt)
        assert image_format(image) == fmt


def test_async_and_sync(dialect: Dialect) -> None:
    for mode in dialect.modes:
        (image,) = dialect.generate(mode=mode, seed=7)
        assert Image.open(io.BytesIO(image)).size == (64, 64)  # 1:1 at the test catalog's 1K


def test_idempotency_where_the_dialect_has_ids(dialect: Dialect) -> None:
    if not dialect.has_ids:
        pytest.skip(f"{dialect.name} has no client-chosen ids")
    assert isinstance(dialect, OpenAIImages | Runware)  # OpenAIImagesV1 is an OpenAIImages
    dialect.idempotent()
