"""The `easel` command: serve, worker, generate, models, pull, config, jobs, keys, lora,
webhooks, watermark, c2pa. Each command group is a module that parses its arguments and calls
the code that does the work (easel.runtime for the processes)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import OperationalError

from easel.cli import catalog, config, jobs, keys, lora, provenance, serve, webhooks
from easel.cli.common import say_error, use_config
from easel.cli.generate import generate


def _print_version(value: bool) -> None:
    if value:
        from easel import __version__

        typer.echo(f"easel {__version__}")
        raise typer.Exit()


def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version,
                                          is_eager=True, help="Print the version and exit.")
                       ] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Settings file (TOML; default: EASEL_CONFIG, else "
                         "~/.config/easel/easel.toml when it exists)")
    ] = None,
) -> None:
    """Self-hosted text-to-image, wire-compatible with the hosted Imagen 4 APIs."""
    use_config(config)


def build() -> typer.Typer:
    """The command, its commands listed here explicitly."""
    command = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
    command.callback()(_options)
    for function in (generate, catalog.models, catalog.pull, serve.serve, serve.worker):
        command.command()(function)
    command.add_typer(keys.app, name="keys")
    command.add_typer(lora.app, name="lora")
    command.add_typer(webhooks.app, name="webhooks")
    command.add_typer(jobs.app, name="jobs")
    command.add_typer(provenance.watermark_app, name="watermark")
    command.add_typer(provenance.c2pa_app, name="c2pa")
    command.add_typer(config.app, name="config")
    return command


app = build()


def without_flag_types(command: Any) -> Any:
    """The command (typer's own click) with no type shown for on/off flags: typer's help lists
    `<bool>` beside `--json` or `--worker/--no-worker`, a value nobody types."""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:  # --help is made per call, not kept in params
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        without_flag_types(sub)
    return command


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        without_flag_types(typer.main.get_command(app))(prog_name="easel")
    except KeyboardInterrupt:
        sys.exit(130)
    except OperationalError as exc:  # an operator's setting, told in one line, not a traceback
        cause = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        say_error(f"the job store cannot be opened ({cause}): check EASEL_DATABASE and "
                  "--data-dir")
        sys.exit(1)
