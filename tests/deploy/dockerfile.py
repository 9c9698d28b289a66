"""The repository's Dockerfile read as Docker reads it: instructions (continuation lines joined,
comments dropped) grouped by build stage, and the build arguments declared before the first
FROM. Enough to ask what each image is, not a general parser."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest)

    def all(self, instruction: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == instruction]

    def one(self, instruction: str) -> str:
        found = self.all(instruction)
        assert len(found) == 1, f"stage {self.name}: {instruction} {len(found)} times"
        return found[0]

    def env(self) -> dict[str, str]:
        """Its ENV settings, in the KEY=VALUE form (one instruction may set several)."""
        values: dict[str, str] = {}
        for rest in self.all("ENV"):
            for pair in rest.split():
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    def json_form(self, instruction: str) -> list[str]:
        """The exec (JSON) form of CMD, ENTRYPOINT, VOLUME or a HEALTHCHECK's CMD."""
        rest = self.one(instruction)
        if instruction == "HEALTHCHECK":
            rest = rest[rest.index("CMD ") + len("CMD "):]
        value = json.loads(rest)
        assert isinstance(value, list), f"{instruction} is not in the exec form"
        return [str(part) for part in value]


@dataclass
class Dockerfile:
    args: dict[str, str]  # the ARGs before the first FROM, with their defaults
    stages: dict[str, Stage]  # in order; the last is the default target

    @property
    def default_target(self) -> str:
        return list(self.stages)[-1]

    def base_of(self, stage: str) -> str:
        """The stage's base image with the global ARGs filled in."""
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args[m[1]], self.stages[stage].base)


def instructions(text: str) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may stand between continuation lines too
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            lines.append((word.upper(), " ".join(rest.split())))
            pending = ""
    return lines


def read(path: Path = DOCKERFILE) -> Dockerfile:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for word, rest in instructions(path.read_text()):
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            current = Stage(base.strip(), name.strip() or str(len(stages)))
            stages[current.name] = current
        elif current is None and word == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        elif current is not None:
            current.instructions.append((word, rest))
    return Dockerfile(args, stages)
