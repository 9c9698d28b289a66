"""Wire details each provider's clients read, in-process: the words of an OpenAI rate limit,
Google's unregistered caller, image caching as long as the image lives."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from starlette.websockets import WebSocketDisconnect

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


APP = "https://app.example"


def test_an_allowed_sites_pages_get_cors_and_still_need_a_key(
    make_edge: Callable[..., Edge],
) -> None:
    """CORS by the book for the operator's allow-list: the preflight names what the page may
    send, replies name the origin (never credentials: keys are headers, not cookies) and
    expose easel's headers; a key is still required; other sites stay refused (403 in the
    dialect's shape, path included)."""
    edge = make_edge(cors_origins=[APP])
    path = "/v1/images/generations"
    preflight = edge.client.options(path, headers={
        "Origin": APP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-retry-count"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-stainless-retry-count" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers
    keyed = edge.client.post(path, json=OPENAI_BODY, headers={
        "Origin": APP, "Authorization": f"Bearer {KEY}"})
    assert keyed.status_code == 200 and keyed.headers["access-control-allow-origin"] == APP
    assert "x-easel-job-id" in keyed.headers["access-control-expose-headers"]
    keyless = edge.client.post(path, json=OPENAI_BODY, headers={"Origin": APP})
    assert keyless.status_code == 401 and keyless.headers["access-control-allow-origin"] == APP
    for method in ("POST", "OPTIONS"):
        other = edge.client.request(method, path, json=OPENAI_BODY, headers={
            "Origin": "https://evil.example", "Authorization": f"Bearer {KEY}",
            "Access-Control-Request-Method": "POST"})
        assert other.status_code == 403, other.text
        assert "access-control-allow-origin" not in other.headers
        assert other.json()["path"] == path  # AIML's field, filled on the guard's refusal too
    anyone = make_edge(cors_origins=["*"]).client.post(path, json=OPENAI_BODY, headers={
        "Origin": "https://elsewhere.example", "Authorization": f"Bearer {KEY}"})
    assert anyone.status_code == 200 and anyone.headers["access-control-allow-origin"] == "*"


def test_without_an_allow_list_no_page_gets_cors(edge: Edge) -> None:
    reply = edge.client.post("/v1/images/generations", json=OPENAI_BODY, headers={
        "Origin": APP, "Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 403 and "access-control-allow-origin" not in reply.headers


def test_an_allowed_sites_pages_open_the_runware_websocket(
    make_edge: Callable[..., Edge],
) -> None:
    edge = make_edge(cors_origins=[APP])
    assert_websocket_origins(edge, allowed=APP, refused="https://evil.example")


def assert_websocket_origins(edge: Edge, allowed: str, refused: str) -> None:
    """A page of `allowed` opens Runware's WebSocket and authenticates; one of `refused` is
    closed with 1008 (policy violation) at the handshake."""
    with edge.client.websocket_connect("/v1", headers={"Origin": allowed}) as ws:
        ws.send_json([{"taskType": "authentication", "apiKey": KEY}])
        assert ws.receive_json()["data"][0]["taskType"] == "authentication"
    with pytest.raises(WebSocketDisconnect) as closed, edge.client.websocket_connect(
            "/v1", headers={"Origin": refused}):
        pass
    assert closed.value.code == 1008


def test_allowed_origins_are_matched_by_scheme_host_and_port(
    make_edge: Callable[..., Edge],
) -> None:
    """An allowed origin with a port allows that port only; one written with its scheme's own
    port matches what a browser sends (which never names it), CORS headers included."""
    edge = make_edge(cors_origins=["http://localhost:3000", "https://app.example:443"])
    keyed = {"Authorization": f"Bearer {KEY}"}
    for origin, allowed in (("http://localhost:3000", True), ("http://localhost:3001", False),
                            ("https://app.example", True),
                            ("https://app.example:8443", False), ("http://app.example", False)):
        reply = edge.client.post("/v1/images/generations", json=OPENAI_BODY,
                                 headers={**keyed, "Origin": origin})
        if allowed:
            assert reply.status_code == 200, (origin, reply.text)
            assert reply.headers["access-control-allow-origin"] == origin
        else:
            assert reply.status_code == 403, (origin, reply.text)
            assert "access-control-allow-origin" not in reply.headers
    assert_websocket_origins(edge, allowed="http://localhost:3000",
                             refused="http://localhost:3001")


def test_a_misspelt_field_or_model_says_what_was_meant(edge: Edge) -> None:
    """`promt` reads "unknown ... did you mean 'prompt'", never "prompt is required"; a model
    id one character off names the one meant; a route nobody serves answers in easel's shape
    with a code."""
    auth = {"Authorization": f"Bearer {KEY}"}
    typo = edge.client.post("/v1/images/generations", headers=auth, json={
        "promt": "a fox", "model": "imagen-4.0-fast-generate-001"}).json()["error"]
    assert typo["param"] == "promt" and "did you mean 'prompt'?" in typo["message"]
    runware = edge.runware([inference(positivPrompt="a fox")]).json()["errors"][0]
    assert runware["parameter"] == "positivPrompt"
    assert "did you mean 'positivePrompt'?" in runware["message"]
    model = edge.client.post("/easel/jobs", headers=auth, json={
        "model": "imagen-4.0-fast-generate-01", "prompt": "a fox"}).json()["error"]
    assert "did you mean 'imagen-4.0-fast-generate-001'?" in model["message"]
    nowhere = edge.client.get("/nowhere", headers=auth)
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]["code"] and nowhere.json()["error"]["message"]
    image = edge.client.get("/images/nothing.png").json()["error"]
    assert image["code"] == "notFound"


def test_a_stand_ins_image_says_so_without_this_machines_paths(edge: Edge) -> None:
    """Every dialect's reply names the stand-in that drew (x-easel-stand-in); the reason a
    job, a reply and an image carry names no path of the server's; the model listing says
    the stand-in's own steps and whether it is trained."""
    auth = {"Authorization": f"Bearer {KEY}"}
    replies = [
        edge.client.post("/v1/images/generations", headers=auth, json=OPENAI_BODY),
        edge.client.post("/v1beta/models/imagen-4.0-fast-generate-001:predict",
                         headers={"x-goog-api-key": KEY},
                         json={"instances": [{"prompt": "a fox"}]}),
        edge.client.post("/api/v3/google/imagen4-fast", headers=auth,
                         json={"prompt": "a fox", "enable_sync_mode": True}),
    ]
    for reply in replies:
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-easel-stand-in"] == "easel/mini"
    job = edge.client.get(f"/easel/jobs/{replies[0].headers['x-easel-job-id']}",
                          headers=auth).json()
    reason = job["stand_in_reason"]
    assert "black-forest-labs/FLUX.2-klein-4B are not present on this server" in reason
    assert "/" + "root" not in reason and "cache" not in reason
    fast = next(t for t in edge.client.get("/easel/models", headers=auth).json()["tiers"]
                if t["tier"] == "fast")
    assert fast["stand_in"] == "easel/mini" and fast["stand_in_trained"] is True
    assert fast["stand_in_steps"] != fast["steps"]  # easel-mini's own schedule is shown


@pytest.mark.parametrize(("quality", "runs_as"), [
    ("low", "imagen-4.0-fast-generate-001"), ("medium", "imagen-4.0-generate-001"),
    ("standard", "imagen-4.0-generate-001"), (None, "imagen-4.0-generate-001"),
    ("high", "imagen-4.0-ultra-generate-001"),
])
def test_the_generic_imagen_4_runs_as_googles_imagen_4_id_of_its_tier(
    edge: Edge, quality: str | None, runs_as: str
) -> None:
    """Not the first id of the tier by name (the Standard tier's Imagen 3 editing model)."""
    body = {"model": "imagen-4", "prompt": "a heron", "size": "1024x1024",
            **({"quality": quality} if quality else {})}
    reply = edge.client.post("/v1/images/generations", json=body,
                             headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == runs_as


def test_wavespeeds_model_list_says_which_ids_take_images(edge: Edge) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    listed = edge.client.get("/api/v3/models", headers=headers).json()["data"]
    types = {m["model_id"]: m["type"] for m in listed}
    assert types["google/nano-banana-pro/edit"] == "image-to-image"
    assert types["google/imagen4"] == "text-to-image"


def test_gemini_names_billing_labels_as_ignored(edge: Edge) -> None:
    body = {"contents": [{"parts": [{"text": "a red fox"}]}], "labels": {"team": "a"}}
    reply = edge.client.post("/v1beta/models/gemini-3-pro-image-preview:generateContent",
                             json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200, reply.text
    ignored = reply.headers["x-easel-ignored-fields"].split(",")
    assert "labels" in [name.strip() for name in ignored]
