"""A page on another site calls easel from a real browser (chromium): with its origin on the
operator's allow-list the browser lets it read replies, over fetch and the Runware WebSocket;
another origin's page is blocked by the browser itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.server_harness import Server

KEY = "page-key"

CALLS = """async ([base, ws, key]) => {
  const out = {};
  try {
    const reply = await fetch(base + "/v1/images/generations", {method: "POST",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
      body: JSON.stringify({model: "imagen-4.0-fast-generate-001", prompt: "a pear",
                            size: "64x64"})});
    const body = await reply.json();
    out.status = reply.status;
    out.job = reply.headers.get("x-easel-job-id");
    out.images = body.data.length;
  } catch (err) { out.fetchError = String(err); }
  out.socket = await new Promise((resolve) => {
    const socket = new WebSocket(ws);
    socket.onerror = () => resolve("error");
    socket.onopen = () => socket.send(JSON.stringify([
      {taskType: "authentication", apiKey: key},
      {taskType: "imageInference", taskUUID: crypto.randomUUID(), model: "google:2@3",
       positivePrompt: "a pear", width: 64, height: 64}]));
    socket.onmessage = (event) => {
      const items = JSON.parse(event.data).data || [];
      if (items.some((item) => item.imageURL)) { socket.close(); resolve("image"); }
    };
  });
  return out;
}"""


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title><p>calls easel"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[int]:
    """Another site's page, on its own port (its origin: http://localhost:<port>)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_an_allowed_sites_page_calls_easel_from_a_browser(
    browser: Any, site: int, tmp_path: Path
) -> None:
    srv = Server(tmp_path / "srv", EASEL_API_KEYS=KEY,
                 EASEL_CORS_ORIGINS=f"http://localhost:{site}").start()
    try:
        page = browser.new_page()
        page.goto(f"http://localhost:{site}/")
        allowed = page.evaluate(CALLS, [srv.url, srv.ws_url, KEY])
        assert allowed == {"status": 200, "job": allowed["job"], "images": 1,
                           "socket": "image"}, allowed
        assert allowed["job"]
        page.goto(f"http://127.0.0.1:{site}/")  # another origin: not on the list
        blocked = page.evaluate(CALLS, [srv.url, srv.ws_url, KEY])
        assert "Failed to fetch" in blocked["fetchError"], blocked
        page.close()
    finally:
        srv.stop()
