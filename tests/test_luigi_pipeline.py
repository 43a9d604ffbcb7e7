"""Pipelines run by luigi.build, on the local scheduler and on a real luigid, against
both registries."""

# ruff: noqa: F401, F811 - fixtures are imported from luigi_helpers

from __future__ import annotations

import hashlib

import pytest
from luigi_helpers import (
    LuigiStatusCode,
    archived,
    build,
    clean_luigi,
    forget,
    luigi,
    luigid,
    nbank_env,
    put,
    runs,
    set_config,
)
from luigi_tasks import Broken, BrokenTemp, Clash, Fan, Forgetful, Gather, Upper

from nbank_core import AlreadyExists, NotFound


@pytest.fixture(params=["local", "luigid"])
def scheduler(request: pytest.FixtureRequest):
    """None for luigi's local scheduler, else the session's luigid."""
    return None if request.param == "local" else request.getfixturevalue("luigid")


def test_outputs_are_deposited_with_provenance_and_a_rerun_does_nothing(
    nbank_env, scheduler, uniq, tmp_path
):
    put(nbank_env, f"st{uniq}", f"spikes of {uniq}\n")
    log = tmp_path / "runs.log"
    result = build([Upper(unit=f"nbank://st{uniq}", run_log=str(log))], scheduler)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    record = nbank_env.registry.get_resource(f"st{uniq}_up")
    assert record["dtype"] == nbank_env.dtype
    assert record["metadata"] == {
        "engine": "luigi",
        "engine_version": luigi.__version__,
        "step": "Upper",
        "parameters": {"unit": f"st{uniq}"},
        "inputs": [f"st{uniq}"],
        # a derived output: its hash is metadata, not the registry's sha1
        "content_sha1": hashlib.sha1(
            f"SPIKES OF {uniq.upper()}\n".encode()
        ).hexdigest(),
    }
    assert record["sha1"] is None
    out = nbank_env.cfg.find_file(f"st{uniq}_up")
    assert out.read_text() == f"SPIKES OF {uniq.upper()}\n"
    assert len(runs(log)) == 1
    before = archived(nbank_env)
    # a rerun (new process state: nothing remembered) finds everything complete
    forget()
    result = build([Upper(unit=f"st{uniq}", run_log=str(log))], scheduler)
    assert result.status == LuigiStatusCode.SUCCESS
    assert len(runs(log)) == 1
    assert archived(nbank_env) == before
    assert nbank_env.registry.get_resource(f"st{uniq}_up") == record


def test_exception_mid_write_leaves_nothing(nbank_env, scheduler, uniq, tmp_path):
    log = tmp_path / "runs.log"
    for task in (
        Broken(name=f"br{uniq}", run_log=str(log)),
        BrokenTemp(name=f"bt{uniq}"),
    ):
        result = build([task], scheduler)
        assert result.status == LuigiStatusCode.FAILED
    assert archived(nbank_env) == []  # no file, nothing left in staging
    assert nbank_env.registry.get_resources([f"br{uniq}", f"bt{uniq}"]) == {}
    # a rerun tries again (the task is not complete) and fails the same way
    assert build([Broken(name=f"br{uniq}", run_log=str(log))], scheduler).status == (
        LuigiStatusCode.FAILED
    )
    assert len(runs(log)) == 2
    assert archived(nbank_env) == []


def test_dependencies_and_temporary_path(nbank_env, scheduler, uniq):
    result = build([Gather(prefix=f"g{uniq}_", n=3)], scheduler)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    out = nbank_env.cfg.find_file(f"g{uniq}_all")
    assert out.read_text() == "".join(f"item g{uniq}_{i}\n" for i in range(3))
    record = nbank_env.registry.get_resource(f"g{uniq}_all")
    assert record["metadata"]["inputs"] == [f"g{uniq}_{i}" for i in range(3)]
    assert list(nbank_env.cfg.staging_dir.iterdir()) == []


def test_task_that_does_not_deposit_fails(nbank_env, uniq):
    result = build([Forgetful(name=f"fg{uniq}")])
    assert result.status == LuigiStatusCode.FAILED
    with pytest.raises(NotFound, match=f"without depositing 'fg{uniq}'"):
        Forgetful(name=f"fg{uniq}").on_success()


def test_same_id_same_content_is_idempotent_other_content_fails(nbank_env, uniq):
    assert build([Clash(name=f"cl{uniq}", content=f"A {uniq}")]).status == (
        LuigiStatusCode.SUCCESS
    )
    # the output exists: luigi does not run either variant again
    other = Clash(name=f"cl{uniq}", content=f"B {uniq}")
    assert other.complete()
    # run anyway (as a second worker that checked before the first deposited)
    Clash(name=f"cl{uniq}", content=f"A {uniq}").run()
    with pytest.raises(AlreadyExists, match="registered with different content"):
        other.run()
    assert nbank_env.cfg.find_file(f"cl{uniq}").read_text() == f"A {uniq}"
    assert list(nbank_env.cfg.staging_dir.iterdir()) == []


@pytest.mark.slow
def test_forked_workers(nbank_env, uniq, tmp_path):
    """Tasks run in forked processes: targets and registries reconnect there."""
    log = tmp_path / "runs.log"
    task = Fan(prefix=f"fk{uniq}_", n=6, run_log=str(log))
    result = build([task], workers=2)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    assert len(nbank_env.registry.get_resources(f"fk{uniq}_{i}" for i in range(6))) == 6
    assert len({line.split()[-1] for line in runs(log)}) >= 2  # process ids
    assert list(nbank_env.cfg.staging_dir.iterdir()) == []


def test_check_complete_on_run_is_compatible(nbank_env, uniq):
    set_config(worker={"check_complete_on_run": "true"})
    result = build([Fan(prefix=f"cc{uniq}_", n=2)])
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
