"""The API reference pages (/docs: Swagger UI, /redoc: ReDoc) in a real browser, Debian's
chromium driven by Playwright, with every request beyond loopback refused: they must render
from what the server ships, as on a machine without internet. Screenshots of each go to
EASEL_TEST_ARTIFACTS (see test_playground.py) for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.pages.browser import ARTIFACTS
from tests.server_harness import Server

KEY = "reference-key"
LOCAL_SCHEMES = ("data:", "blob:", "about:")
OPENAI_GENERATE = "#operations-openai-generate_v1_images_generations_post"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default catalog (its sizes: the documented examples use them) and one API key."""
    srv = Server(tmp_path_factory.mktemp("reference"), small=False, EASEL_API_KEYS=KEY).start()
    yield srv
    srv.stop()


def is_loopback(url: str) -> bool:
    return url.startswith(LOCAL_SCHEMES) or urlsplit(url).hostname in ("127.0.0.1", "localhost")


@dataclass
class Traffic:
    """What the page asked for: every request, those that would have left loopback (refused
    by the route below), those the page's own Content-Security-Policy refused, and errors."""

    requested: list[str] = field(default_factory=list)
    sent_outside: list[str] = field(default_factory=list)
    refused_by_policy: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def outside(self) -> list[str]:
        return [url for url in self.requested if not is_loopback(url)]


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def page(browser: Any, traffic: Traffic) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def only_loopback(route: Any) -> None:
        if is_loopback(route.request.url):
            route.continue_()
        else:
            traffic.sent_outside.append(route.request.url)
            route.abort()

    def failed(request: Any) -> None:
        if request.failure == "csp":
            traffic.refused_by_policy.append(request.url)

    def console(message: Any) -> None:
        if message.type == "error":
            traffic.errors.append(message.text)

    context.route("**/*", only_loopback)
    opened = context.new_page()
    opened.on("request", lambda request: traffic.requested.append(request.url))
    opened.on("requestfailed", failed)
    opened.on("pageerror", lambda exc: traffic.errors.append(str(exc)))
    opened.on("console", console)
    yield opened
    context.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"api-reference-{name}.png"
    page.screenshot(path=str(path))
    return path


def assert_stayed_on_loopback(traffic: Traffic, srv: Server) -> None:
    assert not traffic.sent_outside, traffic.sent_outside
    # ReDoc's sidebar footer shows its vendor's logo from their CDN; the page's policy refuses
    # it before any connection (the logo hides itself when it cannot load).
    assert traffic.outside() == traffic.refused_by_policy, traffic.outside()
    assert all(url == "https://cdn.redoc.ly/redoc/logo-mini.svg"
               for url in traffic.refused_by_policy), traffic.refused_by_policy
    assert any(url.startswith(srv.url + "/docs/assets/") for url in traffic.requested)
    unexpected = [e for e in traffic.errors if "cdn.redoc.ly" not in e]
    assert not unexpected, unexpected  # no script error, no other policy violation


def test_swagger_ui_renders_offline_with_every_dialect_and_an_authorize_button(
    page: Any, server: Server, traffic: Traffic
) -> None:
    page.goto(server.url + "/docs")
    page.wait_for_selector(OPENAI_GENERATE)
    for tag in ("runware", "wavespeed", "google", "openai", "easel", "images", "operations"):
        assert page.locator(f"#operations-tag-{tag}").is_visible(), tag
    assert "/v1/images/generations" in page.locator(OPENAI_GENERATE).inner_text()
    assert page.locator("#operations-images-image_images__name__head").count() == 1
    assert "WebSocket" in page.locator("#operations-tag-runware").inner_text()
    assert page.locator(".opblock").count() > 30
    assert page.locator("button.authorize").is_visible()
    shot(page, "swagger")
    assert_stayed_on_loopback(traffic, server)


def test_swagger_authorize_then_try_the_openai_example_generates_an_image(
    page: Any, server: Server, traffic: Traffic
) -> None:
    page.goto(server.url + "/docs")
    page.click("button.authorize")
    schemes = page.locator(".modal-ux .auth-container")
    assert [s.split("\xa0")[0] for s in schemes.all_inner_texts()] == [
        "bearer", "googleApiKey", "googleApiKeyQuery"]
    bearer = schemes.first
    bearer.locator("input").fill(KEY)
    bearer.locator("button.authorize").click()
    bearer.locator("button", has_text="Logout").wait_for()  # Swagger took the key
    assert "Authorized" in bearer.inner_text()
    page.click(".modal-ux button.close-modal")

    operation = page.locator(OPENAI_GENERATE)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=120_000)
    assert status.inner_text().strip() == "200"
    curl = operation.locator(".curl-command").inner_text()
    assert f"Authorization: Bearer {KEY}" in curl and "google/imagen-4.0-fast-generate-001" in curl
    body = operation.locator(".live-responses-table .response-col_description pre").first
    url = body.inner_text().split('"url": "')[1].split('"')[0]
    assert url.startswith(server.url + "/images/")
    assert httpx.get(url, timeout=30).headers["content-type"] == "image/png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    operation.screenshot(path=str(ARTIFACTS / "api-reference-swagger-try-openai.png"))
    assert_stayed_on_loopback(traffic, server)


def test_redoc_renders_offline_with_its_menu_and_operations(
    page: Any, server: Server, traffic: Traffic
) -> None:
    page.goto(server.url + "/redoc")
    page.wait_for_selector("h1:has-text('easel')")
    menu = page.locator("[role=menu]").first.inner_text().lower()
    for tag in ("runware", "wavespeed", "google", "openai", "easel", "images", "operations"):
        assert tag in menu, menu
    page.get_by_role("menuitem", name="openai").click()
    page.wait_for_selector("h2:has-text('Generate images')")
    assert page.get_by_text("/v1/images/generations").count() >= 1
    assert page.get_by_text("Authorization: Bearer <key>").count() >= 1
    shot(page, "redoc")
    assert_stayed_on_loopback(traffic, server)
