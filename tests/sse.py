"""Server-sent events as any SSE client reads them: (event name, data parsed as JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def parse(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    name, data = "message", []
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield name, json.loads("\n".join(data))
            name, data = "message", []
