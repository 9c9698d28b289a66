"""The page tests' browser: Debian's chromium driven by playwright (no browser download), and
where their screenshots go."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright

ARTIFACTS = Path(os.environ.get("EASEL_TEST_ARTIFACTS", "/tmp/easel-test-artifacts"))


def chromium() -> str:
    """Debian's chromium; without it these tests fail (CI installs it: scripts/system-deps),
    unless EASEL_BROWSER_TESTS=skip says to leave them out on this machine."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("EASEL_BROWSER_TESTS") == "skip":
        pytest.skip("no chromium, and EASEL_BROWSER_TESTS=skip")
    pytest.fail("chromium is not installed (apt-get install chromium); the page tests need it. "
                "Set EASEL_BROWSER_TESTS=skip to leave them out on this machine.")


# The pages load from loopback only. Chromium's background services (updates, autofill, sign-in)
# would otherwise look up Google's names: no test resolves or reaches another address.
BROWSER_ARGS = [
    "--no-sandbox",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--no-pings",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield launched
        launched.close()


__all__ = ["ARTIFACTS", "browser", "chromium"]
