"""Lend a fresh venv what a wheel declares, from the venv the tests run in (the tests have no
PyPI): the distributions its metadata requires, what those require in turn, and torch, which
easel leaves to the operator on purpose. They are linked into one folder that a .pth file of
the fresh venv names as a plain path, so a module the wheel imports without declaring it is
missing there, as it would be after `pip install`. Python reads .pth files only in its own site
directories, so no .pth of the lent packages runs (nor the editable install's, which would put
the repository's src/ on the path)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

INSTALLED_APART = ["torch"]  # docs/deploy.md: installed first, the build that fits the machine


def requirements_of(wheel_metadata: str) -> list[str]:
    """The Requires-Dist lines of a METADATA file."""
    return [line.split(":", 1)[1].strip() for line in wheel_metadata.splitlines()
            if line.startswith("Requires-Dist:")]


def closure(roots: Iterable[str]) -> list[metadata.Distribution]:
    """Every distribution `roots` need here, extras and environment markers evaluated as pip
    does; a requirement this venv lacks raises PackageNotFoundError naming it."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(line) for line in roots]
    while todo:
        wanted = todo.pop()
        key = (canonicalize_name(wanted.name), frozenset(wanted.extras))
        if wanted.marker is not None and not wanted.marker.evaluate({"extra": ""}):
            continue  # another platform's, or an extra nobody asked for
        if key in done:
            continue
        done.add(key)
        dist = found.setdefault(key[0], metadata.distribution(wanted.name))
        for line in dist.requires or []:
            needed = Requirement(line)
            extras = ("", *wanted.extras)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                needed.marker = None  # evaluated here, for the extras of its parent
                todo.append(needed)
    return list(found.values())


def lend(dists: Iterable[metadata.Distribution], folder: Path) -> None:
    """Link each distribution's top-level modules and its .dist-info into `folder`."""
    folder.mkdir(parents=True)
    for dist in dists:
        assert dist.files is not None, f"{dist.name} has no RECORD: cannot tell its files"
        for top in {file.parts[0] for file in dist.files}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue  # scripts (in bin/), bytecode, start-up hooks
            link = folder / top
            if not link.is_symlink():
                link.symlink_to(Path(str(dist.locate_file(top))))
