"""A 20-second version of bench/soak.py: steady load, a receiver failing a third of the time;
every job terminal, every webhook delivered or recorded failed, none acknowledged twice."""

from __future__ import annotations

from bench.soak import run, verdict


def test_short_soak() -> None:
    result = run(seconds=20, rate=2, drain=90)
    assert verdict(result) == [], result
