"""Which registry luigi uses: the core's one rule, through a real scheduler and the
``luigi`` command. With ``NBANK_REGISTRY`` naming another registry, outputs land
in the archive's registry; an explicit registry that is not the archive's is the
core's one-line error, before any task runs."""

# ruff: noqa: F401, F811 - fixtures are imported from luigi_helpers

from __future__ import annotations

import pytest
from luigi_helpers import (
    LuigiStatusCode,
    archived,
    build,
    clean_luigi,
    luigid,
    put,
    runs,
    set_config,
)
from luigi_tasks import Upper
from test_luigi_cli import RETCODES, luigi_cmd, luigi_env, run, write_cfg

from nbank_core import open_registry
from nbank_core.config import registry_mismatch


@pytest.fixture
def other(archive, tmp_path):
    """Another registry that exists and knows the archive's datatype (so a
    deposit sent there by mistake could be accepted), and is not the archive's."""
    url = "sqlite://" + str(tmp_path / "other.sqlite")
    with open_registry(url, create=True) as reg:
        reg.add_datatype(archive.dtype, "text/plain")
    return url


def _in_other(url: str, *names: str) -> dict:
    with open_registry(url) as reg:
        return reg.get_resources(list(names))


def test_nbank_registry_elsewhere_deposits_into_the_archives_registry(
    archive, other, luigid, monkeypatch, uniq, tmp_path
):
    for key, value in archive.backend.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NBANK_REGISTRY", other)  # as a lab's shell profile may
    put(archive, f"st{uniq}", f"input {uniq}\n")
    set_config(nbank={"archive": archive.path, "dtype": archive.dtype})
    log = tmp_path / "runs.log"
    result = build([Upper(unit=f"st{uniq}", run_log=str(log))], luigid)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    assert len(runs(log)) == 1
    record = archive.registry.get_resource(f"st{uniq}_up")
    assert record["metadata"]["inputs"] == [f"st{uniq}"]
    assert _in_other(other, f"st{uniq}_up", f"st{uniq}") == {}
    assert archived(archive) == ["st", f"st{uniq}.txt", f"st{uniq}_up"]


def test_explicit_registry_elsewhere_fails_before_any_task_runs(
    archive, other, luigid, monkeypatch, uniq, tmp_path, caplog
):
    for key, value in archive.backend.env.items():
        monkeypatch.setenv(key, value)
    put(archive, f"st{uniq}", f"input {uniq}\n")
    set_config(
        nbank={"archive": archive.path, "dtype": archive.dtype, "registry": other}
    )
    log = tmp_path / "runs.log"
    result = build([Upper(unit=f"st{uniq}", run_log=str(log))], luigid)
    assert result.status == LuigiStatusCode.SCHEDULING_FAILED
    assert runs(log) == []
    message = registry_mismatch(archive.path, archive.cfg.registry, other)
    assert "\n" not in message
    assert caplog.text.count(message) == 1, caplog.text
    assert archive.registry.get_resources([f"st{uniq}_up"]) == {}
    assert _in_other(other, f"st{uniq}_up") == {}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_luigi_command_follows_the_archives_registry(archive, other, uniq, tmp_path):
    put(archive, f"st{uniq}", f"cli input {uniq}\n")
    cfg = write_cfg(tmp_path / "luigi.cfg", archive=archive.path, dtype=archive.dtype)
    log = tmp_path / "runs.log"
    task = ["Upper", "--unit", f"st{uniq}", "--local-scheduler", "--run-log"]

    # NBANK_REGISTRY names another registry: the archive's is used
    env = luigi_env(cfg, NBANK_REGISTRY=other)
    proc = run(luigi_cmd(*task, str(log)), env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(runs(log)) == 1
    assert archive.registry.get_resource(f"st{uniq}_up")["metadata"]["step"] == "Upper"
    assert _in_other(other, f"st{uniq}_up") == {}

    # --nbank-registry naming it explicitly: the one-line error, once, nothing run
    archive.registry.delete_resource(f"st{uniq}_up")  # the task is to run again
    explicit = ["--nbank-registry", other]
    proc = run(luigi_cmd(*task, str(log), *explicit), luigi_env(cfg), tmp_path)
    assert proc.returncode == RETCODES["scheduling_error"], proc.stderr
    message = registry_mismatch(archive.path, archive.cfg.registry, other)
    assert proc.stderr.count(message) == 1, proc.stderr
    assert len(runs(log)) == 1  # not run again
    assert _in_other(other, f"st{uniq}_up") == {}
