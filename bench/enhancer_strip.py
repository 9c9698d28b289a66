"""How long taking the reasoning out of a prompt enhancer's answer takes, before and after the
fix of issue #30 (item 5), on answers an endpoint gone wrong (or hostile) can send: repeated
opening tags that never close, and opening tags with closing tags of another name.

Before: one regex, `<(think|thinking|reasoning)>.*?</\\1>`, which searches to the end of the
answer from every opening tag without its closing one (quadratic), and ran on the event loop.
After: `easel.services.jobs.prompts._without_reasoning`, one pass over the tags. Both must give
the same text; the script checks that on every answer it times.

    .venv/bin/python -m bench.enhancer_strip                    # 120 KB; 1 MiB after only
    .venv/bin/python -m bench.enhancer_strip --before-up-to 1024  # 1 MiB before too: minutes

An answer is cut off by the 1 MiB byte cap on the endpoint's reply, and since the fix by the
64 Ki-character cap on its text; the strip is timed here on its own, without either cap.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable

from easel.services.jobs.prompts import _without_reasoning

_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)

SHAPES = {"<think> repeated": "<think>", "<think>x</thinking> repeated": "<think>x</thinking>"}


def before(answer: str) -> str:
    """The strip as it was (src/easel/services/jobs/prompts.py before the fix)."""
    text = _BLOCK.sub("", answer)
    closings = list(_CLOSE.finditer(text))
    if closings:
        text = text[closings[-1].end():]
    opening = _OPEN.search(text)
    return text[: opening.start()] if opening else text


def timed(strip: Callable[[str], str], answer: str) -> tuple[float, str]:
    started = time.perf_counter()
    text = strip(answer)
    return time.perf_counter() - started, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-kb", type=int, nargs="+", default=[120, 1024])
    parser.add_argument("--before-up-to", type=int, default=120, metavar="KB",
                        help="time the old strip on answers up to this size (it is quadratic)")
    args = parser.parse_args()
    for name, unit in SHAPES.items():
        for kb in args.sizes_kb:
            answer = unit * (kb * 1024 // len(unit))
            after_s, after_text = timed(_without_reasoning, answer)
            line = f"{name:30} {kb:5} KB  after {after_s * 1000:8.1f} ms"
            if kb <= args.before_up_to:
                before_s, before_text = timed(before, answer)
                assert before_text == after_text, "the strips disagree"
                line += f"  before {before_s:8.2f} s  ({before_s / after_s:,.0f}x)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
