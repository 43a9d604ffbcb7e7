"""Writes a few short WAV stimuli (pure tones) with the standard library only.

    python3 make_stimuli.py OUTDIR [--prefix P] [--frequencies 220 440 880]

Each file is ``OUTDIR/<prefix>tone_<frequency>.wav``: 0.25 s, 16 kHz, 16-bit mono,
with its name in a RIFF ``INFO`` chunk. The file names (without ``.wav``) become the
resources' ids when deposited; the registry keeps contents unique, and the name
chunk makes each stimulus distinct even when two prefixes share a registry.
"""

from __future__ import annotations

import argparse
import math
import struct
import wave
from pathlib import Path

RATE = 16_000
DURATION = 0.25


def write_tone(path: Path, frequency: float) -> None:
    """Writes a sine tone at ``frequency`` Hz with 10 ms linear ramps, titled with
    the file's stem."""
    n = int(RATE * DURATION)
    ramp = int(RATE * 0.01)
    frames = bytearray()
    for i in range(n):
        gain = min(1.0, i / ramp, (n - 1 - i) / ramp)
        value = 0.5 * gain * math.sin(2 * math.pi * frequency * i / RATE)
        frames += struct.pack("<h", round(value * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(frames))
    add_title(path, path.stem)


def add_title(path: Path, title: str) -> None:
    """Appends a ``LIST/INFO/INAM`` chunk and fixes the RIFF size."""
    name = title.encode() + b"\0"
    if len(name) % 2:
        name += b"\0"
    info = b"INFO" + b"INAM" + struct.pack("<I", len(name)) + name
    with path.open("r+b") as f:
        f.seek(0, 2)
        f.write(b"LIST" + struct.pack("<I", len(info)) + info)
        size = f.tell() - 8
        f.seek(4)
        f.write(struct.pack("<I", size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--frequencies", type=int, nargs="+", default=[220, 440, 880])
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    for f in args.frequencies:
        path = args.outdir / f"{args.prefix}tone_{f}.wav"
        write_tone(path, f)
        print(path)


if __name__ == "__main__":
    main()
