"""Callers' text printed to an operator's terminal: a prompt holding ESC sequences, BEL or a
right-to-left override (U+202E) must not reach `easel jobs` output nor the text log raw (it
would recolour, clear or retitle the terminal, ring it, or reorder what is shown, and a newline
would forge a log line). Each is shown escaped (`\\x1b`, `\\u202e`); the JSON log keeps the text,
in JSON's own escapes. Against a real server (the fake engine) and the real CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable

import httpx

from easel import logs
from tests.server_harness import Server

KEY = "terminal-test-key-0123456789"
# Clears the screen, sets the window title, rings the bell, reverses the rest of the line, and
# starts a forged log line; C1's single-byte CSI (U+009B) and an isolate (U+2066) too.
PROMPT = ("a red fox\x1b[2J\x1b]0;owned\x07 in snow\u202egnp.exe \u2066x\u2069 \x9b31m"
          "\n2030-01-01 00:00:00 INFO easel.access: forged")
RAW = ("\x1b", "\x07", "\u202e", "\u2066", "\x9b")
# What a prompt may hold of it: control characters other than tab, newline and CR are refused
# (400 naming the prompt), bidi and format characters are not.
ALLOWED_PROMPT = ("a red fox in snow\u202egnp.exe \u2066x\u2069"
                  "\n2030-01-01 00:00:00 INFO easel.access: forged")
PROMPT_SHOWN = ("\\u202egnp.exe", "\\u2066x\\u2069", "\\n2030-01-01")
SHOWN = ("\\x1b[2J", "\\x1b]0;owned\\x07", "\\u202egnp.exe", "\\u2066x\\u2069", "\\x9b31m",
         "\\n2030-01-01")


def easel(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EASEL_URL": srv.url, "EASEL_API_KEY": KEY, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "easel.cli", "jobs", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def assert_shown_escaped(text: str, shown: tuple[str, ...] = SHOWN) -> None:
    assert not [c for c in RAW if c in text], text
    for escaped in shown:
        assert escaped in text, (escaped, text)


def test_easel_jobs_and_the_text_log_show_control_characters_escaped(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(EASEL_API_KEYS=KEY).start()
    auth = {"Authorization": f"Bearer {KEY}"}
    refused = httpx.post(f"{srv.url}/easel/jobs", json={"model": "google:2@3", "prompt": PROMPT},
                         headers=auth, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["parameter"] == "prompt"
    reply = httpx.post(f"{srv.url}/easel/jobs", headers=auth, timeout=60,
                       json={"model": "google:2@3", "prompt": ALLOWED_PROMPT})
    assert reply.status_code in (200, 202), reply.text
    job_id = reply.json()["id"]

    shown = easel(srv, "show", job_id)
    assert shown.returncode == 0, shown.stderr
    assert_shown_escaped(shown.stdout, PROMPT_SHOWN)
    listed = easel(srv, "list")  # the prompt's first 60 characters
    assert listed.returncode == 0, listed.stderr
    assert_shown_escaped(listed.stdout, PROMPT_SHOWN[:2])
    # An id is a caller's text too: the server's error quotes it, and the CLI prints that.
    missing = easel(srv, "show", "\x1b[2Jgone\u202e")
    assert missing.returncode == 1
    assert_shown_escaped(missing.stderr, ("\\x1b[2Jgone\\u202e",))

    # The access log has the path, decoded: what a caller put in it reaches the log.
    httpx.get(f"{srv.url}/easel/jobs/%1B%5B2J%07%E2%80%AEx", timeout=30)
    srv.stop()
    log = srv.log.read_text()
    assert "/easel/jobs/\\x1b[2J\\x07\\u202ex" in log
    assert_shown_escaped(log, ())


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("easel.test", logging.INFO, __file__, 1, message, args, None)


def test_the_text_log_escapes_each_line_and_the_json_log_keeps_the_text() -> None:
    text = logs.VisibleText("%(levelname)s %(name)s: %(message)s")
    line = text.format(record("job prompt: %s", PROMPT))
    assert "\n" not in line and line.startswith("INFO easel.test: job prompt: a red fox")
    assert_shown_escaped(line)
    try:
        raise ValueError(PROMPT)
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()
    traceback = text.format(failed)
    assert traceback.startswith("INFO easel.test: failed\nTraceback")  # its own lines kept
    assert_shown_escaped(traceback, SHOWN[:-1])  # (its lines kept: the message's too)

    as_json = logs.VisibleJson("%(levelname)s %(name)s %(message)s", json_ensure_ascii=False)
    line = as_json.format(record("%s", PROMPT + " 東京"))
    assert not [c for c in (*RAW, "\n") if c in line]
    assert "東京" in line  # what needs no escape is written as it is
    assert json.loads(line)["message"] == PROMPT + " 東京"  # the text, exactly


def test_visible_leaves_printable_text_alone() -> None:
    for text in ("a red fox", "東京の夜 🌃", "naïve café\u00a0x", "tab-free"):
        assert logs.visible(text) == text
    assert logs.visible("a\tb\x00\x7f\u200b\U000e0001") == "a\\tb\\x00\\x7f\\u200b\\U000e0001"
