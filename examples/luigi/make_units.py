"""Writes spike times (seconds, one per line) of a few recorded units, as a
recording system would: ``python make_units.py DIR`` makes ``DIR/<unit>.txt``.

The times are a Poisson process whose rate depends on the unit, seeded by its
name, so each unit's file is the same every time and differs from the others.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

UNITS = {"st32_1": 8.0, "st32_2": 21.0, "st32_3": 3.5}
DURATION_S = 10.0


def spike_times(unit: str, rate_hz: float) -> list[float]:
    rng = random.Random(unit)
    t, times = 0.0, []
    while True:
        t += rng.expovariate(rate_hz)
        if t >= DURATION_S:
            return times
        times.append(round(t, 5))


def main(outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for unit, rate in UNITS.items():
        path = out / f"{unit}.txt"
        path.write_text("".join(f"{t:.5f}\n" for t in spike_times(unit, rate)))
        print(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "units")
