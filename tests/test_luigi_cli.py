"""The ``luigi`` command: ``--module``, ``[nbank]`` from ``LUIGI_CONFIG_PATH``,
overrides on the command line, and two worker processes on a real luigid."""

# ruff: noqa: F401, F811 - fixtures are imported from luigi_helpers

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from luigi_helpers import BIN, TESTS, archived, clean_luigi, luigid, put, runs
from servers import free_port

RETCODES = {"scheduling_error": 35, "task_failed": 30, "missing_data": 20}


def write_cfg(path: Path, **nbank: object) -> Path:
    lines = ["[core]", "autoload_range = false", "no_lock = true", "[retcode]"]
    lines += [f"{k} = {v}" for k, v in RETCODES.items()]
    lines += ["[nbank]"] + [f"{k} = {v}" for k, v in nbank.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def luigi_env(cfg: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``luigi`` command: no NBANK_* but ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBANK_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")])),
        LUIGI_CONFIG_PATH=str(cfg),
        **extra,
    )
    return env


def luigi_cmd(*args: str) -> list[str]:
    return [str(BIN / "luigi"), "--module", "luigi_tasks", *args]


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_command_line_with_config_file_and_overrides(archive, uniq, tmp_path):
    put(archive, f"st{uniq}", f"cli input {uniq}\n")
    down = f"http://127.0.0.1:{free_port()}/neurobank/"
    cfg = write_cfg(tmp_path / "luigi.cfg", registry=down, dtype=archive.dtype)
    auth = {k: v for k, v in archive.backend.env.items() if k == "NBANK_AUTH"}
    env = luigi_env(cfg, **auth)
    log = tmp_path / "runs.log"
    task = ["Upper", "--unit", f"nbank://st{uniq}", "--run-log", str(log)]

    # [nbank] registry from luigi.cfg is used: it is down, so nothing runs
    proc = run(luigi_cmd(*task, "--local-scheduler"), env, tmp_path)
    assert proc.returncode == RETCODES["scheduling_error"], proc.stderr
    assert "cannot reach the registry" in proc.stderr
    assert runs(log) == []

    # --nbank-registry overrides it; --nbank-archive names where outputs go
    override = ["--nbank-registry", archive.backend.url]
    override += ["--nbank-archive", str(archive.path)]
    proc = run(luigi_cmd(*task, *override, "--local-scheduler"), env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(runs(log)) == 1
    record = archive.registry.get_resource(f"st{uniq}_up")
    assert record["metadata"]["parameters"] == {"unit": f"st{uniq}"}
    assert record["metadata"]["engine"] == "luigi"
    assert archive.cfg.find_file(f"st{uniq}_up").read_text() == (
        f"CLI INPUT {uniq.upper()}\n"
    )

    # a rerun does nothing
    proc = run(luigi_cmd(*task, *override, "--local-scheduler"), env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "complete ones were encountered" in proc.stderr
    assert len(runs(log)) == 1

    # an input that is not archived is missing data, reported as such
    proc = run(
        luigi_cmd("Upper", "--unit", f"none{uniq}", *override, "--local-scheduler"),
        env,
        tmp_path,
    )
    assert proc.returncode == RETCODES["missing_data"], proc.stderr


@pytest.mark.slow
def test_two_workers_on_luigid_deposit_once(archive, luigid, uniq, tmp_path):
    put(archive, f"st{uniq}", f"shared input {uniq}\n")
    cfg = write_cfg(tmp_path / "luigi.cfg", archive=archive.path, dtype=archive.dtype)
    env = luigi_env(cfg, **archive.backend.env)
    log = tmp_path / "runs.log"
    cmd = luigi_cmd(
        "Upper",
        "--unit",
        f"st{uniq}",
        "--run-log",
        str(log),
        "--delay",
        "3",
        "--scheduler-url",
        luigid.url,
    )
    procs = [
        subprocess.Popen(
            cmd,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    assert len(runs(log)) == 1, outputs  # luigid gave the task to one worker
    summaries = "".join(err for _, err in outputs)
    assert "ran successfully" in summaries
    assert "being run by another worker" in summaries  # the other one waited
    assert archive.registry.get_resources([f"st{uniq}_up"]).keys() == {f"st{uniq}_up"}
    assert archived(archive) == ["st", f"st{uniq}.txt", f"st{uniq}_up"]


@pytest.mark.slow
def test_two_local_schedulers_race_and_deposit_once(archive, uniq, tmp_path):
    """Without a central scheduler both processes run the task; identical content
    is deposited once and both succeed."""
    put(archive, f"st{uniq}", f"raced input {uniq}\n")
    cfg = write_cfg(tmp_path / "luigi.cfg", archive=archive.path, dtype=archive.dtype)
    env = luigi_env(cfg, **archive.backend.env)
    log = tmp_path / "runs.log"
    cmd = luigi_cmd(
        "Upper", "--unit", f"st{uniq}", "--run-log", str(log), "--local-scheduler"
    )
    procs = [
        subprocess.Popen(
            cmd,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    assert len(runs(log)) >= 1
    assert archive.registry.get_resources([f"st{uniq}_up"]).keys() == {f"st{uniq}_up"}
    assert archived(archive) == ["st", f"st{uniq}.txt", f"st{uniq}_up"]
