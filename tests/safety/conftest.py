"""The chat endpoint the prompt-rewrite tests talk to, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.safety.chat import ChatServer, start_chat_server


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatServer]:
    server, thread = start_chat_server()
    yield server
    server.server.should_exit = True
    thread.join(10)
