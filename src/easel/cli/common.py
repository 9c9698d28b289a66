"""What every command shares: its consoles, the one-line failure, the settings of this run, the
options of the commands that serve, and a writable directory check."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from easel.catalog import Catalog
from easel.settings import CONFIG_ENV, Settings, SettingsError, load_settings

out = Console()
err = Console(stderr=True)
serve_log = logging.getLogger("easel.cli")  # serve and worker log; other commands print

ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="Settings file (TOML), as `easel --config FILE` (default: EASEL_CONFIG)")]
LogLevel = Annotated[str | None, typer.Option(
    help="debug, info, warning or error (default: EASEL_LOG_LEVEL, info)")]
LogJson = Annotated[bool | None, typer.Option(
    "--log-json/--log-text", help="One JSON object a line (default: EASEL_LOG_JSON, text)")]
DataDir = Annotated[
    Path | None, typer.Option(help="Where the job store lives (default: EASEL_DATA_DIR)")
]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and the exit code. The message may quote a caller's text (a server's
    error names the parameter and its value): what a terminal would act on is shown escaped."""
    say_error(message)
    raise typer.Exit(code)


def say_error(message: str) -> None:
    """fail's line alone (for main, where a command's typer.Exit no longer applies)."""
    from easel.logs import visible

    err.print(f"error: {visible(message)}", markup=False, highlight=False, soft_wrap=True)


def use_config(config: Path | None) -> None:
    if config is not None:
        # The flag is a spelling of EASEL_CONFIG: every command, and every process it starts,
        # reads the same file.
        os.environ[CONFIG_ENV] = str(config)


def settings_from(**flags: object) -> Settings:
    """The settings of this command: its flags (None: not given) over the environment, over
    the settings file, over the defaults; a bad value is one line, not a traceback."""
    try:
        return load_settings(**flags)  # type: ignore[arg-type]  # flags are Settings fields
    except SettingsError as exc:
        fail(str(exc))


def load_catalog(settings: Settings) -> Catalog:
    overlays = [settings.catalog_file] if settings.catalog_file else []
    return Catalog.load(*overlays)


def configure_logs(settings: Settings) -> None:
    from easel import logs
    from easel.settings import secret_values

    logs.configure(settings.log_level, settings.log_json, secret_values(settings))


def writable_dir(path: Path, option: str) -> None:
    """Makes the directory, or fails in one line naming the option."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{option} {path}: {exc.strerror or exc}")
    if not os.access(path, os.W_OK):
        fail(f"{option} {path}: not writable")
