"""`easel config`: every setting, its value and where it came from; the settings reference."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from easel.cli.common import out, settings_from
from easel.logs import MASK, MaskSecrets
from easel.settings import env_name, setting_source

app = typer.Typer(no_args_is_help=True,
                  help="Settings: flag > environment > settings file > default.")


@app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Print every setting's value and where it came from: `flag`, `EASEL_...`, the settings
    file, or `default`. Secrets are masked."""
    from easel.settings import SECRET_SETTINGS, config_file_path, read_settings_file

    settings = settings_from()
    path = config_file_path()  # settings_from has checked it already
    file_values = read_settings_file(path) if path else {}
    values = {name: _masked(value) for name, value in settings.model_dump(mode="json").items()}
    for name in SECRET_SETTINGS:
        values[name] = MASK if values[name] else values[name]
    sources = {name: setting_source(name, {}, file_values, path) for name in values}
    if as_json:
        typer.echo(json.dumps({"settings_file": str(path) if path else None,
                               "settings": values, "sources": sources}, indent=2))
        return
    out.print(f"easel settings (file: {path or 'none'})", markup=False)
    # 80 columns: names whole, values and sources wrap (a long path folds; it is never cut).
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold", ratio=3)
    table.add_column("from", overflow="fold", ratio=1)
    for name, value in values.items():
        table.add_row(env_name(name), json.dumps(value) if not isinstance(value, str) else value,
                      sources[name])
    out.print(table)


def _masked(value: object) -> object:
    """A value with the credentials inside it masked as the log masks them (a database URL's
    password, a token in a URL's query)."""
    if isinstance(value, str):
        return MaskSecrets().mask(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


@app.command("reference")
def config_reference() -> None:
    """Print the Markdown table of every setting (docs/operations.md's, generated)."""
    from easel.settings import reference_markdown

    typer.echo(reference_markdown(), nl=False)
