"""Schemathesis fuzzes every dialect's endpoints from /openapi.json against a real server:
no 5xx, every status and body as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.server_harness import Server

CHECKS = ("not_a_server_error,status_code_conformance,response_schema_conformance,"
          "content_type_conformance")
# Google's :predict is served on six paths by one handler and one schema (Gemini's v1beta and
# v1alpha, Vertex's four). The fuzz takes one Gemini and one Vertex path: the other four would
# repeat the same cases, a third of the whole run (tests/dialects covers every path).
ALIASES = (r"^/(v1alpha/models/\{model_action\}|v1beta1/.*/\{model_action\}"
           r"|v1/publishers/google/models/\{model_action\}"
           # A signed URL only easel makes (tests/dialects/test_wavespeed.py): the fuzz could
           # only ever be refused there.
           r"|api/v3/media/uploads/\{name\})$")


def test_openapi_fuzz_finds_no_server_errors_or_schema_violations(
    server: Server, tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    # One worker: with two threads, hypothesis' lambda descriptions (ast.parse) race on
    # Python 3.11.7 ("AST constructor recursion depth mismatch") and the run errors out.
    result = subprocess.run(
        [str(st), "run", f"{server.url}/openapi.json", "--checks", CHECKS,
         "--max-examples", os.environ.get("EASEL_FUZZ_EXAMPLES", "8"), "--workers", "1",
         "--request-timeout", "60", "--seed", "1", "--no-color",
         "--exclude-path-regex", ALIASES],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
