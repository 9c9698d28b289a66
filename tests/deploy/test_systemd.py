"""deploy/systemd: the unit passes systemd's own checks where systemd-analyze exists
(`verify`, and `security`: its exposure score), its user is what easel.sysusers creates, and
it says what matters for easel: a dedicated user, the keys from an environment file, restart on
failure, a read-only system but for the data and weights, and a stop timeout longer than
easel's drain."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from easel.settings import Settings
from tests.deploy.dockerfile import ROOT

UNIT = ROOT / "deploy" / "systemd" / "easel.service"
SYSUSERS = ROOT / "deploy" / "systemd" / "easel.sysusers"
INSTALLED_EASEL = "/opt/easel/venv/bin/easel"
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def unit() -> dict[str, dict[str, list[str]]]:
    """section -> key -> values, in order: systemd allows a key many times (Environment=)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        else:
            key, _, value = line.partition("=")
            sections[section][key].append(value)
    return sections


def service() -> dict[str, list[str]]:
    return unit()["Service"]


def environment() -> dict[str, str]:
    pairs = [pair.partition("=") for line in service()["Environment"] for pair in line.split()]
    return {key: value for key, _, value in pairs}


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match is not None, value
    return int(match[1]) * (60 if match[2] == "min" else 1)


@needs_systemd
def test_systemd_analyze_verify_accepts_it(tmp_path: Path) -> None:
    """verify also checks that ExecStart's program exists; only the program is swapped, for
    the easel of the venv the tests run in, since this machine has no /opt/easel."""
    text = UNIT.read_text()
    assert INSTALLED_EASEL in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_EASEL, str(Path(sys.executable).with_name("easel"))))
    verified = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                              text=True, timeout=60)
    assert (verified.returncode, verified.stderr) == (0, "")


@needs_systemd
def test_exposure_score_is_low() -> None:
    """systemd's own rating of the sandbox, shown from 0 to 10 (no sandbox): 2.0 or below. The
    threshold counts in tenths."""
    scored = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                             str(UNIT)], capture_output=True, text=True, timeout=60)
    assert scored.returncode == 0, scored.stdout[-2000:]


def test_runs_as_a_dedicated_user_with_its_settings_from_a_file() -> None:
    unit_service = service()
    assert unit_service["User"] == ["easel"] and unit_service["Group"] == ["easel"]
    assert unit_service["EnvironmentFile"] == ["/etc/easel/easel.env"]  # no "-": it must exist
    assert unit_service["ExecStart"] == [f"{INSTALLED_EASEL} serve"]
    assert environment()["EASEL_HOST"] == "0.0.0.0"  # so keys are required (docs/deploy.md)
    assert unit_service["Restart"] == ["on-failure"]


def test_the_system_is_read_only_but_the_data_and_the_weights() -> None:
    unit_service = service()
    assert unit_service["ProtectSystem"] == ["strict"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID"):
        assert unit_service[key] == ["yes"], key
    assert unit_service["CapabilityBoundingSet"] == [""]
    writable = {path for line in unit_service["ReadWritePaths"] for path in line.split()}
    env = environment()
    assert Path(env["EASEL_DATA_DIR"]) in {Path(p) for p in writable}
    assert any(Path(env["HF_HOME"]).is_relative_to(p) for p in writable)
    assert Path(env["EASEL_DATA_DIR"]) == Path("/var/lib") / unit_service["StateDirectory"][0]


def test_stop_waits_for_the_drain() -> None:
    unit_service = service()
    assert unit_service["KillSignal"] == ["SIGTERM"]
    timeout = seconds(unit_service["TimeoutStopSec"][0])
    assert timeout > Settings().shutdown_grace_seconds


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None,
                    reason="systemd-sysusers is not installed")
def test_sysusers_creates_the_units_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)], check=True,
                   capture_output=True, timeout=60)
    users = {line.split(":")[0]: line.split(":")
             for line in (tmp_path / "etc" / "passwd").read_text().splitlines()}
    entry = users[service()["User"][0]]
    assert 0 < int(entry[2]) < 1000  # a system user
    assert entry[5] == environment()["EASEL_DATA_DIR"] and entry[6] == "/usr/sbin/nologin"
