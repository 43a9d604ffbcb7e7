"""Compatibility with the existing ``nbank`` client (neurobank 0.13.0), run from its
own virtualenv: one registry, one archive, each client reading what the other wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = str(Path(sys.executable).with_name("nbank"))


def _compat_client() -> str:
    path = os.environ.get("NBANK_COMPAT_CLIENT") or str(ROOT / ".venv-compat/bin/nbank")
    if not Path(path).is_file():
        pytest.skip(
            "the neurobank 0.13.0 client is not installed "
            "(tools/run-tests installs it in .venv-compat)"
        )
    return path


@pytest.fixture
def theirs() -> str:
    client = _compat_client()
    version = subprocess.run([client, "--version"], capture_output=True, text=True)
    assert "0.13.0" in version.stdout + version.stderr
    return client


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    return proc.stdout


def _global(server) -> list[str]:
    return ["-r", server.url, "-a", ":".join(server.auth)]


@pytest.mark.slow
def test_their_archive_and_deposits_work_with_ours(
    theirs, django_registry, tmp_path, uniq
):
    g = _global(django_registry)
    arch = tmp_path / "theirs"
    dtype = f"c{uniq}"
    _run([theirs, *g, "init", str(arch), "-n", f"t{uniq}", "-u", "027"])
    _run([theirs, *g, "dtype", "add", dtype, "text/plain"])
    src = tmp_path / f"old{uniq}.txt"
    src.write_text(f"deposited by 0.13.0 {uniq}")
    _run([theirs, *g, "deposit", "-d", dtype, str(arch), str(src)])
    # ours reads their nbank.json (umask written as a decimal int) and records
    assert (
        json.loads((arch / "nbank.json").read_text())["policy"]["access"]["umask"] == 23
    )
    located = _run([OURS, *g, "locate", "--path-only", f"old{uniq}"]).strip()
    assert Path(located).read_text() == f"deposited by 0.13.0 {uniq}"
    info = json.loads(_run([OURS, *g, "info", f"old{uniq}"]))
    assert info["dtype"] == dtype
    # ours deposits into their archive; they find it
    new = tmp_path / f"new{uniq}.txt"
    new.write_text(f"deposited by us {uniq}")
    _run([OURS, *g, "deposit", "-d", dtype, str(arch), str(new)])
    their_path = _run([theirs, *g, "locate", f"new{uniq}"]).split("\t")[-1].strip()
    assert Path(their_path).read_text() == f"deposited by us {uniq}"
    assert oct(Path(their_path).stat().st_mode & 0o777) == oct(0o440)
    # and their verify agrees with our hash
    copy = tmp_path / "copy.txt"
    copy.write_text(f"deposited by us {uniq}")
    assert f"new{uniq}" in _run([theirs, *g, "verify", str(copy)])


@pytest.mark.slow
def test_our_archive_and_deposits_work_with_theirs(
    theirs, django_registry, tmp_path, uniq
):
    g = _global(django_registry)
    arch = tmp_path / "ours"
    dtype = f"d{uniq}"
    _run([OURS, *g, "init", str(arch), "-n", f"o{uniq}"])
    _run([OURS, *g, "dtype", "add", dtype, "text/plain"])
    src = tmp_path / f"ours{uniq}.txt"
    src.write_text(f"ours {uniq}")
    _run([OURS, *g, "deposit", "-d", dtype, "-k", "site=3", str(arch), str(src)])
    their_path = _run([theirs, *g, "locate", f"ours{uniq}"]).split("\t")[-1].strip()
    assert Path(their_path).read_text() == f"ours {uniq}"
    their_info = json.loads(_run([theirs, *g, "info", f"ours{uniq}"]))
    assert their_info["metadata"]["site"] == 3
    # they deposit into our archive; we find it, and its hash matches
    theirs_src = tmp_path / f"theirs{uniq}.txt"
    theirs_src.write_text(f"theirs {uniq}")
    _run([theirs, *g, "deposit", "-d", dtype, str(arch), str(theirs_src)])
    ours_path = _run([OURS, *g, "locate", "--path-only", f"theirs{uniq}"]).strip()
    assert Path(ours_path).read_text() == f"theirs {uniq}"
    copy = tmp_path / "copy.txt"
    copy.write_text(f"theirs {uniq}")
    assert _run([OURS, *g, "verify", str(copy)]) == (
        f"{copy}: matches registry resource theirs{uniq}\n"
    )
    # their archive check finds nothing wrong with what we wrote
    check = subprocess.run(
        [theirs, *g, "check", "archive", str(arch)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
