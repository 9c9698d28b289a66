"""An OpenAI-compatible chat endpoint on loopback (FastAPI under uvicorn, in a thread) that
each test tells how to behave: the prompt rewrite's tests (tests/prompts) and the attacks on it
through the app (tests/edge/test_prompt_attacks.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

SECRET = "sk-test-secret"  # what the endpoint puts in its error bodies: it must not leak


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0  # seconds before answering (it stops early when the client hangs up)
    content: str | None = None  # the assistant's message; None: a rewrite of the user's
    raw: str | None = None  # this body as is, instead of a chat completion


@dataclass
class ChatEndpoint:
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: uvicorn.Server | None = None

    def app(self) -> FastAPI:
        app = FastAPI()
        app.post("/v1/chat/completions")(self.complete)
        return app

    async def complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        how = self.behaviour
        await _wait_unless_gone(request, how.delay)
        if how.status != 200:
            return PlainTextResponse(f"overloaded (key {SECRET})", status_code=how.status)
        if how.raw is not None:
            return Response(how.raw, media_type="application/json")
        user = body["messages"][-1]["content"]
        text = how.content if how.content is not None else rewrite(user)
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": body["model"], "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"


def rewrite(prompt: str) -> str:
    return f"A detailed photograph of {prompt}, soft morning light"


async def _wait_unless_gone(request: Request, seconds: float) -> None:
    """A slow answer that ends when the client hangs up, so shutdown need not wait for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)


@contextmanager
def serving() -> Iterator[ChatEndpoint]:
    """The endpoint, listening on a free loopback port until the block ends."""
    chat = ChatEndpoint()
    chat.server = uvicorn.Server(uvicorn.Config(chat.app(), host="127.0.0.1", port=0,
                                                log_level="error", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=chat.server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not chat.server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert chat.server.started, "the chat endpoint did not start"
    try:
        yield chat
    finally:
        chat.server.should_exit = True
        thread.join(10)
