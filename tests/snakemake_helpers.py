"""Helpers for the Snakemake plugin tests: running the real ``snakemake`` and
``nbank`` commands in a working directory, against one of the test registries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "snakemake"
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
NBANK = str(BIN / "nbank")


def clean_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command: no registry settings inherited from the
    caller, an ``NBANK_HOME`` inside ``workdir``, the venv's commands first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NBANK_", "SNAKEMAKE_STORAGE_NBANK_"))
    }
    env["NBANK_HOME"] = str(workdir / ".nbank")
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.update(extra or {})
    return env


def run(
    cmd: list[str],
    workdir: Path,
    env: dict[str, str],
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Runs ``cmd`` in ``workdir``; on an unexpected exit status, fails with its
    output."""
    proc = subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited with {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}"
        )
    return proc


def snakemake(
    workdir: Path, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs the real ``snakemake`` command (with two cores) in ``workdir``."""
    return run([SNAKEMAKE, "--cores", "2", *args], workdir, env, check=check)


def nbank(
    workdir: Path, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs the real ``nbank`` command in ``workdir``."""
    return run([NBANK, *args], workdir, env, check=check)


def deposit_stimuli(
    workdir: Path, archive: Path, prefix: str, dtype: str, env: dict[str, str]
) -> list[str]:
    """Generates the example's stimuli and deposits them with ``nbank deposit``;
    returns their ids."""
    out = run(
        [
            sys.executable,
            str(EXAMPLE / "make_stimuli.py"),
            "stimuli",
            "--prefix",
            prefix,
        ],
        workdir,
        env,
    ).stdout.split()
    nbank(workdir, "deposit", "-d", dtype, str(archive), *out, env=env)
    return [Path(p).stem for p in out]


def archived_files(archive: Path, ident: str) -> list[Path]:
    """Every file in the archive's shard stored under ``ident``."""
    shard = archive / "resources" / ident[:2]
    return sorted(p for p in shard.glob(f"{ident}*") if p.stem == ident)


def staging_is_empty(archive: Path) -> bool:
    staging = archive / "staging"
    return not staging.exists() or not any(staging.iterdir())
