"""Runware's request and reply shapes, for /openapi.json only (parsing is in schemas.py, which
answers every problem with a Runware error naming the parameter)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from easel.api.openapi import Open, model_schema


class _Task(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageInferenceTask(_Task):
    taskType: Literal["imageInference"]
    taskUUID: str = Field(description="UUID v4; the idempotency key")
    model: str
    positivePrompt: str
    negativePrompt: str | None = None
    width: int | None = None
    height: int | None = None
    numberResults: int = 1
    outputType: str | list[Literal["URL", "base64Data", "dataURI"]] = "URL"
    outputFormat: Literal["JPG", "JPEG", "PNG", "WEBP"] = "JPG"
    outputQuality: int = Field(95, ge=20, le=99)
    deliveryMethod: Literal["sync", "async"] = "sync"
    ttl: int | None = Field(None, ge=60)
    includeCost: bool = False
    seed: int | None = None
    safety: dict[str, Any] | None = None
    checkNSFW: bool | None = None
    webhookURL: str | None = None
    uploadEndpoint: str | None = None
    providerSettings: dict[str, Any] | None = None


class GetResponseTask(_Task):
    taskType: Literal["getResponse"]
    taskUUID: str


class AuthenticationTask(_Task):
    taskType: Literal["authentication"]
    apiKey: str
    connectionSessionUUID: str | None = None


class PingTask(_Task):
    taskType: Literal["ping"]
    ping: bool | None = None


class Envelope(Open):
    data: list[dict[str, Any]] | None = None
    errors: list[dict[str, Any]] | None = None


def tasks_schema() -> dict[str, Any]:
    tasks: list[type[BaseModel]] = [ImageInferenceTask, GetResponseTask, AuthenticationTask,
                                    PingTask]
    return {"type": "array", "minItems": 1, "items": {"anyOf": [model_schema(t) for t in tasks]}}
