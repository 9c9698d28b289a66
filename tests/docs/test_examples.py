"""Every fenced code block of docs/*.md and README.md: run as printed against a live server, or
marked in the page with the reason it is not run here.

A block is run by its language tag (`python`: the interpreter of the venv the tests run in, or,
for a block whose `# pip install REQUIREMENT` comment names a client, an SDK venv of
tests/sdk_venvs.py whose installed version meets it; `bash` and `sh`: bash with `-euo
pipefail`, the venv's `easel` first on PATH) in a fresh directory where `.venv` is that venv,
as in a checkout set up by the README.

The environment is a fresh shell's: no `EASEL_*` variable but those the page's own setup block
exports (`EASEL_URL`, `EASEL_API_KEY`: given this test server's values, as a reader's would be
their server's), and those that stand for this machine's defaults (the server's data dir and
catalog, no settings file, a Hugging Face hub on loopback for `easel pull`). A block that reads
an `EASEL_*` variable its page does not tell the reader to set fails
test_examples_read_only_what_their_page_sets.

An HTML comment on the line before a fence says otherwise:

    <!-- example: not run (REASON) -->          it cannot run here, for the reason given
    <!-- example: file -->                      a file's text, not a command (TOML, JSON parse)
    <!-- example: catalog overlay -->           an EASEL_CATALOG_FILE: easel must load it
    <!-- example: run by tests/PATH (NOTE) -->  another test runs it (PATH names the page)
    <!-- example: setup -->                     what the reader sets before the page's examples

A block of any other language without such a comment fails test_every_block_is_run_or_says_why,
so no new example slips by unrun, and none is run twice.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from easel.catalog import Catalog
from tests.cli.fake_hub import FakeHub, Repo, running
from tests.dialects.conftest import KEY, ROOT, live
from tests.sdk_venvs import SDKS, sdk_python
from tests.server_harness import Server

__all__ = ["live"]

PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
SHELLS = ("bash", "sh")
MARKER = re.compile(r"<!--\s*example:\s*(?P<kind>.*?)\s*-->")
RUN_BY = re.compile(r"run by (?P<path>tests/\S+)(?: \(.+\))?")
NOT_RUN = re.compile(r"not run \((?P<reason>.+)\)")
PIP = re.compile(r"# pip install (?P<requirement>\S+)(?:\s.*)?")
EXPORT = re.compile(r"^export (?P<name>EASEL_\w+)=", re.M)
READS = re.compile(r"""os\.environ(?:\.get\(|\[)["'](?P<py>EASEL_\w+)|\$\{?(?P<sh>EASEL_\w+)""")
DEFINES = re.compile(r"^(?:export )?(?P<name>EASEL_\w+)=", re.M)
# What stands for this machine's defaults rather than anything a reader sets (see above).
MACHINE = ("EASEL_DATA_DIR", "EASEL_CATALOG_FILE", "EASEL_CONFIG")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, counted from 1
    language: str
    code: str
    marker: str | None  # the kind of the `<!-- example: ... -->` comment before it

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs_here(self) -> bool:
        return self.marker is None and (self.language == "python" or self.language in SHELLS)

    @property
    def requirement(self) -> str | None:
        """The client a python block says to install (`# pip install "openai>=1.99"`)."""
        lines = self.code.splitlines() if self.language == "python" else []
        found = next((m["requirement"] for line in lines if (m := PIP.fullmatch(line))), None)
        return found.strip("\"'") if found is not None else None

    @property
    def sdk(self) -> str | None:
        """The SDK venv (tests/sdk_venvs.py) that meets the block's requirement."""
        return None if self.requirement is None else venv_meeting(self.requirement)

    @property
    def reads(self) -> set[str]:
        """The EASEL_* variables the block reads and does not set itself."""
        read = {m["py"] or m["sh"] for m in READS.finditer(self.code)}
        return read - {m["name"] for m in DEFINES.finditer(self.code)}


def page_blocks(page: Path) -> tuple[list[Block], list[int]]:
    """The page's code blocks, and the lines of its markers that stand before no block."""
    text = page.read_text()
    markers = {n: m["kind"] for n, line in enumerate(text.splitlines())
               if (m := MARKER.fullmatch(line.strip()))}
    found = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type not in ("fence", "code_block") or token.map is None:
            continue
        start = token.map[0]
        found.append(Block(page, start + 1, token.info.strip().split(" ")[0], token.content,
                           markers.pop(start - 1, None)))
    return found, [n + 1 for n in markers]


def venv_meeting(requirement: str) -> str | None:
    """The first SDK venv (tests/sdk_venvs.py order: newest first) whose installed client
    meets `requirement`; None when none does."""
    from packaging.requirements import Requirement

    wanted = Requirement(requirement)
    for name, pinned in SDKS.items():
        if Requirement(pinned).name != wanted.name:
            continue
        site = sdk_python(name).parents[1] / "lib"
        dist = wanted.name.replace("-", "_")
        for info in site.glob(f"python*/site-packages/{dist}-*.dist-info"):
            if info.name[len(dist) + 1:].removesuffix(".dist-info") in wanted.specifier:
                return name
    return None


def page_setup(page: Path) -> set[str]:
    """The EASEL_* variables the page's setup block tells the reader to export."""
    blocks, _ = page_blocks(page)
    return {m["name"] for b in blocks if b.marker == "setup" for m in EXPORT.finditer(b.code)}


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in page_blocks(page)[0]]


def problem(block: Block) -> str | None:
    """Why the block is neither run here nor validly marked, or None."""
    if block.runs_here:
        if block.requirement is not None and block.sdk is None:
            return f"no SDK venv meets {block.requirement!r} (tests/sdk_venvs.py)"
        return None
    kind = block.marker
    if kind == "setup":
        return None if block.language in SHELLS and EXPORT.search(block.code) else (
            "a setup block is a bash block of `export EASEL_...=` lines")
    if kind is None:
        return (f"a `{block.language or 'plain'}` block is not run: mark it "
                "<!-- example: not run (REASON) --> or <!-- example: file -->")
    if kind == "file":
        return unparsable(block)
    if kind == "catalog overlay" or NOT_RUN.fullmatch(kind):
        return None
    run_by = RUN_BY.fullmatch(kind)
    if run_by is None:
        return f"unknown marker {kind!r}"
    test = ROOT / run_by["path"]
    if not test.is_file():
        return f"{run_by['path']} does not exist"
    if block.page.stem not in test.read_text():
        return f"{run_by['path']} does not mention {block.page.name}"
    return None


def unparsable(block: Block) -> str | None:
    """Why a file's text does not parse as its language says, or None."""
    try:
        if block.language == "toml":
            tomllib.loads(block.code)
        elif block.language == "json":
            json.loads(block.code)
    except ValueError as exc:  # both parsers' errors are ValueErrors
        return f"the {block.language} file does not parse: {exc}"
    return None


def test_every_block_is_run_or_says_why() -> None:
    problems = []
    for page in PAGES:
        blocks, stray = page_blocks(page)
        problems += [f"{page.relative_to(ROOT)}:{n}: a marker before no code block" for n in stray]
        problems += [f"{b.name}: {why}" for b in blocks if (why := problem(b))]
    assert not problems, "\n".join(problems)
    assert sum(b.runs_here for b in all_blocks()) >= 1


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.marker == "catalog overlay"],
                         ids=lambda b: b.name)
def test_catalog_overlays_load(block: Block, tmp_path: Path) -> None:
    overlay = tmp_path / "catalog.toml"
    overlay.write_text(block.code)
    catalog = Catalog.load(overlay)
    tables = {"tiers": catalog.tiers, "backends": catalog.backends, "models": catalog.models,
              "size_tables": catalog.size_tables}
    for section, entries in tomllib.loads(block.code).items():
        assert set(entries) <= set(tables[section]), (section, entries)


@pytest.fixture(scope="module")
def hub(model_cache: Path) -> Iterator[str]:
    """A Hugging Face hub on loopback holding the Fast tier's repository, as a tiny stand-in of
    its family, so `easel pull fast` runs as printed without the network."""
    from easel.engine.families import stand_in_dir

    fast = Catalog.load().backend_for("fast")
    folder = stand_in_dir(f"easel/tiny-{fast.family}", model_cache)
    with running(FakeHub({fast.source: Repo(folder)})) as endpoint:
        yield endpoint


# The values a reader's setup would give, for this test's server.
SETUP_VALUES = {"EASEL_URL": "url", "EASEL_API_KEY": "key"}


def environment(live: Server, hub: str, home: Path, page: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    shell = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    values = {"url": live.url, "key": KEY}
    return {
        **shell,
        **{name: values[SETUP_VALUES[name]] for name in page_setup(page)},
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "EASEL_DATA_DIR": str(live.data_dir),
        "EASEL_CATALOG_FILE": str(live.data_dir / "catalog.toml"),  # the server's small sizes
        "HF_HOME": str(home / "hf"), "HF_ENDPOINT": hub, "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "EASEL_CONFIG": "",  # no settings file of the machine's user
    }


def command(block: Block) -> list[str]:
    if block.language in SHELLS:
        return ["bash", "-euo", "pipefail", "-c", block.code]
    python = sdk_python(block.sdk) if block.sdk else Path(sys.executable)
    return [str(python), "-c", block.code]


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.runs_here], ids=lambda b: b.name)
def test_example_runs_as_printed(block: Block, live: Server, hub: str, tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    env = environment(live, hub, tmp_path, block.page)
    proc = subprocess.run(command(block), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{block.name}:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{block.name} printed nothing"


def test_examples_read_only_what_their_page_sets() -> None:
    """A reader runs an example in a fresh shell with what the page told them to set: every
    EASEL_* variable an example reads (run here or by another test) is in its page's setup
    block, and each setup names only variables this suite knows the values of."""
    problems = []
    for page in PAGES:
        setup = page_setup(page)
        problems += [f"{page.name}: setup exports {name}, which no test gives a value"
                     for name in setup - set(SETUP_VALUES)]
        for block in page_blocks(page)[0]:
            if block.marker == "setup" or not (block.runs_here or
                                                (block.marker or "").startswith("run by")):
                continue
            missing = block.reads - setup - set(MACHINE)
            if missing:
                problems.append(f"{block.name} reads {sorted(missing)}, which "
                                f"{page.name} does not tell the reader to set")
    assert not problems, "\n".join(problems)
