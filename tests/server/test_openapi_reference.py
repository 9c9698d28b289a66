"""/openapi.json and the reference pages, read as a client reads them, against a real server:
every documented request body works as it is with the default catalog; the key schemes are
declared and each operation says a key is needed exactly where the server asks for one; every
route is documented; the pages load only what the package ships; HEAD on an image."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.server_harness import Server

KEY = "openapi-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PLACEHOLDER = "not-a-real-id"  # a path parameter the schema gives no example for


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default catalog (its sizes: the examples use them), tiny stand-ins, one key."""
    srv = Server(tmp_path_factory.mktemp("openapi"), small=False, EASEL_API_KEYS=KEY).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def spec(live: Server) -> dict[str, Any]:
    reply = httpx.get(live.url + "/openapi.json", timeout=30)
    assert reply.status_code == 200
    return dict(reply.json())


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, by_method in spec["paths"].items():
        for method, operation in by_method.items():
            yield method, path, operation


def filled(path: str, operation: dict[str, Any]) -> str:
    """The path with each parameter's documented example (or a placeholder) in place."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        value = parameter.get("example")
        if value is None and parameter.get("examples"):
            value = next(iter(parameter["examples"].values()))["value"]
        path = path.replace("{" + parameter["name"] + "}", value or PLACEHOLDER)
    assert "{" not in path, path
    return path


def example_bodies(operation: dict[str, Any]) -> dict[str, Any]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    return {name: example["value"] for name, example in content.get("examples", {}).items()}


# What a successful reply of each dialect looks like (a 2xx alone can carry a failed task).
SUCCEEDED: dict[str, Callable[[Any], bool]] = {
    "runware": lambda body: "errors" not in body and len(body["data"]) >= 1,
    "wavespeed": lambda body: body["code"] == 200 and not body["data"]["error"],
    "google": lambda body: len(body["predictions"]) >= 1,
    "openai": lambda body: len(body["data"]) >= 1,
    "easel": lambda body: body["status"] in ("queued", "running", "completed"),
}


def test_every_documented_example_body_works_as_it_is(live: Server, spec: dict[str, Any]) -> None:
    """Each example once, and each path that has examples once (Google's six :predict paths
    share their examples: those need not each run on all six)."""
    tried, bodies_sent, paths_sent = set(), set(), set()
    for method, path, operation in operations(spec):
        for name, body in example_bodies(operation).items():
            sent_as = json.dumps(body, sort_keys=True)
            if sent_as in bodies_sent and path in paths_sent:
                continue
            bodies_sent.add(sent_as)
            paths_sent.add(path)
            url = live.url + filled(path, operation)
            reply = httpx.request(method.upper(), url, json=body, headers=AUTH, timeout=300)
            where = f"{method.upper()} {path} example {name!r}: {reply.text[:400]}"
            assert 200 <= reply.status_code < 300, where
            tag = operation["tags"][0]
            assert SUCCEEDED[tag](reply.json()), where
            tried.add(tag)
    assert tried == set(SUCCEEDED)  # every dialect documents a body that works


def test_the_key_schemes_are_declared_and_each_route_names_its_own(
    spec: dict[str, Any],
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert (schemes["googleApiKey"]["in"], schemes["googleApiKey"]["name"]) == (
        "header", "x-goog-api-key")
    assert (schemes["googleApiKeyQuery"]["in"], schemes["googleApiKeyQuery"]["name"]) == (
        "query", "key")
    ops = {(method, path): op for method, path, op in operations(spec)}
    assert ops["post", "/v1/images/generations"]["security"] == [{"bearer": []}]
    assert ops["post", "/api/v3/{model_id}"]["security"] == [{"bearer": []}]
    assert ops["post", "/v1"]["security"] == [{"bearer": []}, {}]  # or apiKey in the body
    gemini = ops["post", "/v1beta/models/{model_action}"]["security"]
    assert gemini == [{"googleApiKey": []}, {"googleApiKeyQuery": []}, {"bearer": []}]
    for open_route in (("get", "/livez"), ("get", "/readyz"), ("get", "/images/{name}"),
                       ("head", "/images/{name}")):
        assert "security" not in ops[open_route], open_route


def test_a_key_is_declared_exactly_where_the_server_asks_for_one(
    live: Server, spec: dict[str, Any]
) -> None:
    """Each operation, called without a key: refused ones declare a scheme; those declared
    as needing one (no empty alternative) are refused."""
    for method, path, operation in operations(spec):
        bodies = list(example_bodies(operation).values())
        body = bodies[0] if bodies else ({} if method == "post" else None)
        reply = httpx.request(method.upper(), live.url + filled(path, operation), json=body,
                              timeout=60)
        google_refusal = reply.status_code == 403 and "PERMISSION_DENIED" in reply.text
        refused = reply.status_code == 401 or google_refusal
        declared = operation.get("security", [])
        where = f"{method.upper()} {path}: {reply.status_code} {reply.text[:200]}"
        assert refused == bool(declared) or (not refused and {} in declared), where


def test_every_route_is_documented_with_a_tag_and_a_summary(spec: dict[str, Any]) -> None:
    documented = {(method, path) for method, path, _ in operations(spec)}
    expected = {
        ("get", "/livez"), ("get", "/readyz"), ("get", "/metrics"),
        ("get", "/images/{name}"), ("head", "/images/{name}"),
        ("post", "/v1"),
        ("post", "/api/v3/{model_id}"), ("get", "/api/v3/predictions/{prediction_id}/result"),
        ("get", "/api/v3/predictions/{prediction_id}"), ("get", "/api/v3/models"),
        ("post", "/api/v3/predictions/{prediction_id}/cancel"),
        ("get", "/api/v3/webhook/secret"),
        ("post", "/v1beta/models/{model_action}"), ("get", "/v1beta/models"),
        ("post", "/v1beta1/projects/{project}/locations/{location}/publishers/google/models/"
                 "{model_action}"),
        ("post", "/v1/images/generations"), ("get", "/v1/models"), ("get", "/v1/models/{model_id}"),
        ("get", "/easel/info"), ("get", "/easel/models"), ("post", "/easel/jobs"),
        ("get", "/easel/jobs"), ("get", "/easel/jobs/{job_id}"),
        ("post", "/easel/jobs/{job_id}/cancel"), ("get", "/easel/jobs/{job_id}/deliveries"),
        ("get", "/easel/jobs/{job_id}/events"),
    }
    assert expected <= documented, expected - documented
    for method, path, operation in operations(spec):
        assert operation.get("summary") and operation.get("tags"), (method, path)
    tags = {tag["name"]: tag["description"] for tag in spec["tags"]}
    assert {op["tags"][0] for _, _, op in operations(spec)} == set(tags)
    assert "WebSocket" in tags["runware"] and "connectionSessionUUID" in tags["runware"]
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    events = spec["paths"]["/easel/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]


def test_the_pages_load_only_assets_this_server_ships(live: Server) -> None:
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")),
                         ("/redoc", ("redoc.standalone.js", "favicon.png"))):
        reply = httpx.get(live.url + page, timeout=30)
        assert reply.status_code == 200, page
        loaded = re.findall(r'(?:src|href)="([^"]+)"', reply.text)
        assert sorted(loaded) == sorted(f"/docs/assets/{name}" for name in assets), loaded
        assert "http" not in " ".join(loaded)
        policy = reply.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
        inline = re.findall(r"<script>", reply.text)
        assert policy.count("'sha256-") == len(inline), policy  # its own start-up script only
    types = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
             "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
    for name, mime in types.items():
        reply = httpx.get(f"{live.url}/docs/assets/{name}", timeout=30)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith(mime)
        assert len(reply.content) > 1000 and reply.headers["etag"]
        again = httpx.get(f"{live.url}/docs/assets/{name}", timeout=30,
                          headers={"If-None-Match": reply.headers["etag"]})
        assert again.status_code == 304  # a reload revalidates, it does not fetch 2.8 MB again
    assert httpx.get(live.url + "/docs/assets/..%2Freference.py", timeout=30).status_code == 404
    assert httpx.get(live.url + "/docs/assets/other.js", timeout=30).status_code == 404


def raw_request(url: str, method: str) -> tuple[str, bytes]:
    """The status line and headers, and every byte after them until the server closes: what
    the server really sent, not what a client library chose to read."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"{method} {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def header(head: str, name: str) -> str:
    found = re.search(rf"^{name}: (.*)$", head, re.IGNORECASE | re.MULTILINE)
    assert found, head
    return found.group(1).strip()


def test_head_on_an_image_gives_its_headers_without_the_body(live: Server) -> None:
    reply = httpx.post(live.url + "/v1/images/generations", headers=AUTH, timeout=300,
                       json={"model": "google/imagen-4.0-fast-generate-001",
                             "prompt": "a red fox in fresh snow", "size": "1024x1024"})
    assert reply.status_code == 200, reply.text
    url = reply.json()["data"][0]["url"]
    get_head, image = raw_request(url, "GET")
    head_head, nothing = raw_request(url, "HEAD")
    assert get_head.startswith("HTTP/1.1 200") and head_head.startswith("HTTP/1.1 200")
    assert len(image) > 1000 and image.startswith(b"\x89PNG")
    assert nothing == b""
    for name in ("content-type", "content-length", "cache-control"):
        assert header(head_head, name) == header(get_head, name), name
    assert header(head_head, "content-type") == "image/png"
    assert int(header(head_head, "content-length")) == len(image)
    missing_head, missing = raw_request(live.url + "/images/00000000-0000-0000-0000-0.png",
                                        "HEAD")
    assert missing_head.startswith("HTTP/1.1 404") and missing == b""


def test_protected_meta_routes_cover_the_reference_pages_and_assets(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(EASEL_API_KEYS="k", EASEL_PROTECT_META_ROUTES=1).start()
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui-bundle.js",
                 "/docs/assets/redoc.standalone.js", "/docs/assets/favicon.png"):
        assert httpx.get(srv.url + path, timeout=30).status_code == 401, path
        assert httpx.get(srv.url + path, headers={"Authorization": "Bearer k"},
                         timeout=30).status_code == 200, path
