"""Wire details each provider's clients read, in-process: the words of an OpenAI rate limit,
Google's unregistered caller, image caching as long as the image lives."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.edge.conftest import KEY, Edge
from tests.server_harness import inference

OPENAI_BODY = {"prompt": "a fox", "model": "imagen-4.0-fast-generate-001", "size": "64x64"}


def test_an_openai_rate_limit_reads_as_openais(make_edge: Callable[..., Edge]) -> None:
    """OpenAI's 429: type `requests` (request-rate limits), code `rate_limit_exceeded`."""
    edge = make_edge(rate_limit_per_second=0.1, rate_limit_burst=1)
    headers = {"Authorization": f"Bearer {KEY}"}
    assert edge.client.post("/v1/images/generations", json=OPENAI_BODY,
                            headers=headers).status_code == 200
    limited = edge.client.post("/v1/images/generations", json=OPENAI_BODY, headers=headers)
    error = limited.json()["error"]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")


def test_an_image_is_cached_as_long_as_it_lives(edge: Edge) -> None:
    """Cache-Control follows the image's own lifetime (here a 120 s ttl), never past it."""
    reply = edge.runware([inference(outputType="URL", ttl=120)])
    (item,) = reply.json()["data"]
    path = httpx.URL(item["imageURL"]).path
    first = edge.client.get(path)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "private, max-age=120, immutable"
    edge.wall.advance(100)
    later = edge.client.head(path)
    assert later.headers["cache-control"] == "private, max-age=20, immutable"
    edge.wall.advance(30)
    assert edge.client.get(path).status_code == 404


def test_google_model_descriptions_name_the_stand_in_as_it_is(
    make_edge: Callable[..., Edge],
) -> None:
    """easel-mini is trained (simple scenes); only the tiny pipelines draw noise."""
    path = "/v1beta/models/imagen-4.0-fast-generate-001"
    headers = {"x-goog-api-key": KEY}
    mini = make_edge().client.get(path, headers=headers).json()["description"]
    assert "easel-mini, a small trained model" in mini and "noise" not in mini
    tiny = make_edge(stand_in="tiny").client.get(path, headers=headers).json()["description"]
    assert "untrained stand-in easel/tiny-" in tiny
