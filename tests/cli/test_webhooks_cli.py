"""`easel webhooks verify`: docs/operations.md's command as printed and with a real delivery's
values in place of its placeholders; a malformed secret is one line and exit 2, never a
traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from easel.cli import app
from easel.services.delivery.signing import new_secret, signed_headers

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"data":[{"taskType":"imageInference","imageUUID":"7c1e"}]}'


def docs_command() -> str:
    """The `easel webhooks verify` block of docs/operations.md, as printed."""
    text = (ROOT / "docs" / "operations.md").read_text()
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)
                if "easel webhooks verify" in b]
    return block


def run_docs_command(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("EASEL_WEBHOOK_SECRET", None)
    return subprocess.run(["bash", "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_docs_command_as_printed_says_the_placeholder_is_no_secret(tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(BODY)
    proc = run_docs_command(docs_command(), tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["error: --secret is not whsec_ followed by base64"]
    assert proc.stdout == ""


def test_the_docs_command_with_a_deliverys_values_checks_its_signature(tmp_path: Path) -> None:
    secret = new_secret()
    headers = signed_headers(secret, "msg_2Yh0", BODY)
    command = (docs_command().replace("whsec_...", secret)
               .replace("msg_...", headers["webhook-id"])
               .replace("1767225600", headers["webhook-timestamp"])
               .replace("v1,...", headers["webhook-signature"]))
    (tmp_path / "body.json").write_bytes(BODY)
    valid = run_docs_command(command, tmp_path)
    assert (valid.returncode, valid.stdout) == (0, "valid\n"), valid.stderr
    (tmp_path / "body.json").write_bytes(BODY.replace(b"7c1e", b"7c1f"))
    tampered = run_docs_command(command, tmp_path)
    assert tampered.returncode == 1
    assert tampered.stderr.startswith("error: invalid webhook signature")


def verify(tmp_path: Path, *options: str, **env: str) -> tuple[int, list[str]]:
    """Exit code and stderr lines of `webhooks verify` on a signed body, in process."""
    headers = signed_headers(new_secret(), "msg_1", BODY)
    (tmp_path / "body.json").write_bytes(BODY)
    args = ["webhooks", "verify", "--body-file", str(tmp_path / "body.json"), *options]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    result = CliRunner().invoke(app, args, env={"EASEL_WEBHOOK_SECRET": None, **env})
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    return result.exit_code, result.stderr.splitlines()


@pytest.mark.parametrize(("secret", "message"), [
    ("", "error: --secret is empty: expected whsec_<base64>"),
    ("whsec_", "error: --secret is empty: expected whsec_<base64>"),
    ("whsec_...", "error: --secret is not whsec_ followed by base64"),
    ("whsec_not base64!", "error: --secret is not whsec_ followed by base64"),
    ("whsec_QUJDR", "error: --secret is not whsec_ followed by base64"),  # truncated
])
def test_an_empty_or_malformed_secret_is_one_line_and_exit_2(
    tmp_path: Path, secret: str, message: str
) -> None:
    assert verify(tmp_path, "--secret", secret) == (2, [message])


def test_a_malformed_secret_from_the_environment_is_named_so(tmp_path: Path) -> None:
    assert verify(tmp_path, EASEL_WEBHOOK_SECRET="whsec_...") == (
        2, ["error: EASEL_WEBHOOK_SECRET is not whsec_ followed by base64"])


def test_an_empty_wavespeed_secret_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert verify(tmp_path, "--scheme", "wavespeed", "--secret", "whsec_") == (
        2, ["error: --secret is empty"])


def test_a_well_formed_secret_that_did_not_sign_is_exit_1(tmp_path: Path) -> None:
    code, lines = verify(tmp_path, "--secret", new_secret())
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: invalid webhook")
