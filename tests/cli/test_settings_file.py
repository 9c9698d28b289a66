"""The settings file and the one precedence: flag > environment > file > default; every setting
documented in docs/operations.md, from the settings class itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.server_harness import Server, free_port

from easel.settings import (
    Settings,
    SettingsError,
    config_file_path,
    load_settings,
    reference_markdown,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets: no EASEL_* of the caller, no user settings file."""
    for key in list(os.environ):
        if key.upper().startswith("EASEL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_each_layer_wins_over_the_ones_below(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    config = write(tmp_path / "easel.toml", "port = 9001\nbatch_size = 2\nlease_seconds = 12\n")
    assert load_settings().port == 8000  # default
    assert load_settings(config).port == 9001  # file over default
    monkeypatch.setenv("EASEL_PORT", "9002")
    monkeypatch.setenv("EASEL_BATCH_SIZE", "3")
    settings = load_settings(config)
    assert (settings.port, settings.batch_size, settings.lease_seconds) == (9002, 3, 12.0)
    flagged = load_settings(config, port=9003, batch_size=None)  # None: the flag not given
    assert (flagged.port, flagged.batch_size) == (9003, 3)
    assert isinstance(flagged, Settings)


def test_the_file_is_found_by_flag_variable_or_default(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    default = write(tmp_path / "xdg" / "easel" / "easel.toml", "port = 7001\n")
    other = write(tmp_path / "other.toml", "port = 7002\n")
    assert config_file_path() == default and load_settings().port == 7001
    monkeypatch.setenv("EASEL_CONFIG", str(other))
    assert load_settings().port == 7002
    assert load_settings(default).port == 7001  # the flag's file over the variable's
    monkeypatch.setenv("EASEL_CONFIG", "")
    assert config_file_path() is None and load_settings().port == 8000


def test_lists_paths_and_tables_read_as_toml_types(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "catalog.toml", "")  # a file setting must name a file
    config = write(tmp_path / "conf" / "easel.toml", """
api_keys = ["k1", "k2"]
catalog_file = "catalog.toml"
data_dir = "/srv/easel"
dialect_image_ttl = { openai = 600, google = 60 }
webhook_retry_delays = [1, 2.5]
""")
    settings = load_settings(config)
    assert settings.api_keys == ["k1", "k2"]
    # a relative path is relative to the file, not to wherever the command runs
    assert settings.catalog_file == (tmp_path / "conf" / "catalog.toml").resolve()
    assert settings.data_dir == Path("/srv/easel")
    assert settings.dialect_image_ttl == {"openai": 600, "google": 60}
    assert settings.webhook_retry_delays == [1.0, 2.5]


@pytest.mark.parametrize(("text", "message"), [
    ("prot = 1\n", "unknown setting(s): prot (did you mean port?)"),
    ("port = 70000\n", "port ("),
    ('blocked_prompts_file = "absent.txt"\n', "blocked_prompts_file ("),
    ('database = "foo://bar"\n', "not a database URL easel can open"),
    ('log_level = "loud"\n', "log_level ("),
    ("port = \n", "easel.toml: Invalid value"),
    ('port = "high"\n', "port ("),
])
def test_a_bad_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path / "easel.toml", text)
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert message in str(caught.value)
    if "port (" in message:  # a bad value names the setting and the file it came from
        assert f"port ({config})" in str(caught.value)


def test_a_missing_file_named_by_the_variable_is_an_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASEL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match=r"nope\.toml does not exist"):
        load_settings()


def test_a_renamed_setting_is_refused_with_its_new_name(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """fallback_max_steps is stand_in_max_steps now: the old name is never ignored quietly."""
    config = write(tmp_path / "easel.toml", "fallback_max_steps = 2\n")
    with pytest.raises(SettingsError, match="fallback_max_steps was renamed stand_in_max_steps"):
        load_settings(config)
    monkeypatch.setenv("EASEL_FALLBACK_MAX_STEPS", "2")
    with pytest.raises(SettingsError, match="EASEL_FALLBACK_MAX_STEPS was renamed "
                                            "EASEL_STAND_IN_MAX_STEPS"):
        load_settings()
    monkeypatch.delenv("EASEL_FALLBACK_MAX_STEPS")
    monkeypatch.setenv("EASEL_STAND_IN_MAX_STEPS", "2")
    assert load_settings().stand_in_max_steps == 2


def easel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easel.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_config_show_says_where_each_value_came_from(tmp_path: Path) -> None:
    config = write(tmp_path / "easel.toml", 'port = 9001\nhost = "127.0.0.2"\n'
                                            'webhook_secret = "whsec_c2VjcmV0"\n')
    env = {**os.environ, "EASEL_HOST": "127.0.0.3",
           "EASEL_DATABASE": "postgresql://easel:hunter2pw@127.0.0.1:5432/easel",
           "EASEL_PROMPT_ENHANCER_URL": "http://127.0.0.1:9/v1?token=abc12345"}
    shown = easel("--config", str(config), "config", "show", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["settings_file"] == str(config)
    assert body["settings"]["port"] == 9001 and body["sources"]["port"] == str(config)
    assert body["settings"]["host"] == "127.0.0.3" and body["sources"]["host"] == "EASEL_HOST"
    assert body["sources"]["batch_size"] == "default"
    assert body["settings"]["webhook_secret"] == "***"  # never printed
    # Credentials inside a value are masked as the log masks them.
    assert "hunter2pw" not in shown.stdout and "abc12345" not in shown.stdout
    assert body["settings"]["database"] == "postgresql://easel:***@127.0.0.1:5432/easel"
    bad = easel("config", "show", env={**env, "EASEL_LEASE_SECONDS": "soon"})
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: invalid settings: lease_seconds (EASEL_LEASE_SECONDS): Input should be a valid "
        "number, unable to parse string as a number"]


def test_serve_takes_the_flag_over_the_variable_and_the_file_below(tmp_path: Path) -> None:
    """A real server: the file's port and the variable's lose to --port; the file's API key
    (set nowhere else) is in force."""
    flag_port, env_port, file_port = free_port(), free_port(), free_port()
    config = write(tmp_path / "easel.toml", f'port = {file_port}\napi_keys = ["file-key"]\n')
    server = Server(tmp_path / "data", command=["-m", "easel.cli", "serve"],
                    EASEL_CONFIG=str(config), EASEL_PORT=str(env_port))
    server.port = flag_port  # the harness passes --port
    try:
        server.start(wait_ready=False)
        assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 401
        answer = httpx.get(f"{server.url}/v1/models", timeout=10,
                           headers={"Authorization": "Bearer file-key"})
        assert answer.status_code == 200
        for port in (env_port, file_port):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)
    finally:
        server.stop()


def test_every_setting_is_documented_in_operations_md() -> None:
    """The table between the markers is `easel config reference`'s output, unchanged."""
    page = (ROOT / "docs" / "operations.md").read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", page, re.S)
    assert found, "docs/operations.md lacks the generated settings table"
    assert found.group(1) == reference_markdown(), (
        "docs/operations.md is out of date: paste `easel config reference` between the markers")
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring"
        assert f"`EASEL_{name.upper()}`" in found.group(1)


# A default as the Limits table states it: "`EASEL_X` (30 s)", "(1000 queued jobs)", "(64 MiB)".
STATED = re.compile(r"`EASEL_(\w+)` \((\d+(?: \d{3})*)(?: (bytes|MiB|s|days)\b)?")
UNITS = {"": 1, "bytes": 1, "s": 1, "MiB": 1024 * 1024, "days": 86400}


def test_the_limits_table_states_each_settings_own_default() -> None:
    page = (ROOT / "docs" / "operations.md").read_text()
    table = page.split("## Limits\n", 1)[1].strip().split("\n\n", 1)[0]
    stated = {name.lower(): int(number.replace(" ", "")) * UNITS[unit]
              for name, number, unit in STATED.findall(table)}
    assert "max_body_bytes" in stated and "max_ttl_seconds" in stated, stated
    for name, value in stated.items():
        assert Settings.model_fields[name].default == value, f"EASEL_{name.upper()}"


def test_the_example_file_in_operations_md_loads(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "operations.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", page, re.S)
    settings = load_settings(write(tmp_path / "easel.toml", example))
    assert settings.host == "0.0.0.0" and settings.api_keys == ["sk-replace-me"]
    assert settings.preload_models == ["google:2@3", "google:2@2"]


def test_a_variable_that_must_be_json_is_one_clear_error(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("EASEL_DIALECT_IMAGE_TTL", "openai=5")
    with pytest.raises(SettingsError, match=r"dialect_image_ttl \(EASEL_DIALECT_IMAGE_TTL\): "
                                            r"not valid JSON"):
        load_settings()


@pytest.mark.parametrize(("env", "says"), [
    ({"EASEL_IMAGE_TTL_SECONDS": "0"}, "image_ttl_seconds (EASEL_IMAGE_TTL_SECONDS): Input "
                                       "should be greater than or equal to 1"),
    ({"EASEL_IMAGE_TTL_SECONDS": "99999999"}, "image lifetimes {'image_ttl_seconds': 99999999} "
                                              "are longer than max_ttl_seconds (2592000): "
                                              "raise EASEL_MAX_TTL_SECONDS too"),
    ({"EASEL_DELIVERY_CONCURRENCY": "0"}, "delivery_concurrency (EASEL_DELIVERY_CONCURRENCY)"),
])
def test_lifetimes_and_counts_out_of_range_refuse_in_one_line(
    env: dict[str, str], says: str
) -> None:
    """An image lifetime of 0 (URLs dead before the job ends) or past the longest a client may
    ask for, or no delivery worker at all, was taken as given."""
    shown = easel("config", "show", env={**os.environ, **env})
    lines = shown.stderr.strip().splitlines()
    assert shown.returncode == 2 and len(lines) == 1, shown.stderr
    assert lines[0].startswith("error: invalid settings: ") and says in lines[0], lines


def test_a_job_store_that_cannot_be_opened_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    unreachable = f"postgresql://easel:pw@127.0.0.1:{free_port()}/easel"  # nothing listens
    for database in (f"sqlite:///{tmp_path}/missing/dir/easel.db", unreachable):
        shown = easel("keys", "list", env={**os.environ, "EASEL_DATABASE": database})
        lines = shown.stderr.strip().splitlines()
        assert shown.returncode == 1 and len(lines) == 1, shown.stderr[-2000:]
        assert lines[0].startswith("error: the job store cannot be opened (")
        assert "EASEL_DATABASE" in lines[0] and "pw@" not in lines[0]
