"""Runs client scripts on request inside one SDK venv's interpreter (tests/sdk_clients.py).

Standard library only: it runs under each SDK venv's Python. Each line on stdin is a JSON
object {"script": path, "argv": [arguments]}; the script runs as `python script arguments`
would run it (as __main__, with that sys.argv), its output captured, and one JSON line comes
back: {"code": exit status, "stdout": ..., "stderr": ...}. The SDK a script imports stays
imported for the next one: that is what this process is for.
"""

import contextlib
import io
import json
import os
import runpy
import sys
import traceback


def run(script: str, argv: list[str]) -> dict[str, object]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    sys.argv = [script, *argv]
    sys.path.insert(0, os.path.dirname(script))  # as `python script` puts the script's folder
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # a script's failure is its exit status 1 and its traceback
            traceback.print_exc()
            code = 1
    sys.path.remove(os.path.dirname(script))
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    del sys.path[0]  # this file's folder (tests/), whose packages would shadow the SDKs' names
    for line in sys.stdin:
        request = json.loads(line)
        reply = run(request["script"], request["argv"])
        sys.__stdout__.write(json.dumps(reply) + "\n")
        sys.__stdout__.flush()


if __name__ == "__main__":
    main()
