"""An OpenAI-compatible chat completions endpoint on loopback, for the prompt-rewrite tests: it
rewrites the user's message and can be told to be slow, fail, or answer nonsense."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response


class ChatServer:
    """An OpenAI-compatible chat completions endpoint that the tests tell how to behave."""

    def __init__(self) -> None:
        self.behaviour = "rewrite"
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.complete)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0,
                                                    log_level="error"))

    async def complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        prompt = body["messages"][-1]["content"]
        if self.behaviour == "slow":
            await asyncio.sleep(3)
        if self.behaviour == "fail":
            return PlainTextResponse("overloaded", status_code=500)
        if self.behaviour == "garbage":
            return PlainTextResponse("not json")
        text = {"rewrite": f"A detailed photograph of {prompt}, golden hour light",
                "think": f"<think>plan it</think>\nPrompt: \"{prompt}, in watercolour\"",
                "empty": "  "}.get(self.behaviour, prompt)
        return JSONResponse({"id": "c1", "object": "chat.completion", "created": 0,
                             "model": body["model"], "choices": [
                                 {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}]})

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"


def start_chat_server() -> tuple[ChatServer, threading.Thread]:
    chat = ChatServer()
    thread = threading.Thread(target=chat.server.run, daemon=True)
    thread.start()
    while not chat.server.started:
        time.sleep(0.02)
    return chat, thread
