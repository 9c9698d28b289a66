"""Wire details each provider's clients read, in-process: the words of an OpenAI rate limit,
Google's unregistered caller, image caching as long as the image lives."""

from __future__ import annotations

from collections.abc import Callable

from tests.edge.conftest import KEY, Edge

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
