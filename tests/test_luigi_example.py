"""examples/luigi/run.sh works on an empty directory, and again."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from luigi_helpers import BIN

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "luigi" / "run.sh"


@pytest.mark.slow
def test_example_runs_and_reruns(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBANK_", "LUIGI"))}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    work = tmp_path / "work"

    def run() -> str:
        proc = subprocess.run(
            ["bash", str(EXAMPLE), str(work)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    first = run()
    summary = json.loads(first.rpartition(".json)\n")[2])
    assert set(summary) == {"st32_1_rate500", "st32_2_rate500", "st32_3_rate500"}
    assert summary["st32_2_rate500"]["mean_hz"] > summary["st32_3_rate500"]["mean_hz"]
    made = sorted(p.name for p in (work / "archive" / "resources").rglob("*.*"))
    report = first[first.index("== firing rates") :]
    second = run()
    assert second[second.index("== firing rates") :] == report  # same created_on
    assert sorted(p.name for p in (work / "archive" / "resources").rglob("*.*")) == made
    assert list((work / "archive" / "staging").iterdir()) == []
    assert (work / ".nbank" / "registry.sqlite").exists()
