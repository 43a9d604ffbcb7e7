"""The datatype of an output from its extension (issue 11, item 2): with no dtype
on the target, the task or ``[nbank]``, the one registered datatype with the
output's extension is used; otherwise the task fails BEFORE ``run()``, when
luigi schedules it, with the core's message (nbank_core.dtype_for_suffix)."""

# ruff: noqa: F401, F811 - fixtures are imported from luigi_helpers

from __future__ import annotations

import pytest
from luigi_helpers import (
    LuigiStatusCode,
    archived,
    build,
    clean_luigi,
    count_requests,
    forget,
    luigid,
    runs,
    set_config,
)
from luigi_tasks import AfterTyped, Typed
from test_luigi_cli import RETCODES, luigi_cmd, luigi_env, run, write_cfg

from nbank_core import ConfigError, NotFound, dtype_for_suffix


@pytest.fixture
def env(archive, monkeypatch):
    """The archive, [nbank] archive set and NO dtype anywhere."""
    for key, value in archive.backend.env.items():
        monkeypatch.setenv(key, value)
    set_config(nbank={"archive": archive.path})
    return archive


def _message(archive, ext: str) -> str:
    with pytest.raises(ConfigError) as err:
        dtype_for_suffix(ext, registry=archive.registry)
    return str(err.value)


def test_the_extension_names_the_datatype(env, luigid, uniq, tmp_path):
    ext = f".e{uniq[:7]}"
    env.registry.add_datatype(f"typed-{uniq}", "text/plain", ext[1:])
    log = tmp_path / "runs.log"
    result = build([AfterTyped(name=f"ty{uniq}", ext=ext, run_log=str(log))], luigid)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    for name in (f"ty{uniq}", f"ty{uniq}_after"):
        assert env.registry.get_resource(name)["dtype"] == f"typed-{uniq}"
        assert env.cfg.find_file(name).name == f"{name}{ext}"
    assert len(runs(log)) == 2


@pytest.mark.parametrize("registered", [0, 2])
def test_no_single_datatype_fails_before_run(env, luigid, uniq, tmp_path, registered):
    ext = f".n{uniq[:7]}"
    for k in range(registered):
        env.registry.add_datatype(f"dup{k}-{uniq}", "text/plain", ext[1:])
    expected = _message(env, ext)
    assert ("several" if registered else "no datatype") in expected
    log = tmp_path / "runs.log"
    task = AfterTyped(name=f"nt{uniq}", ext=ext, run_log=str(log))
    result = build([task], luigid)
    # luigi reports it when scheduling: neither the task nor what needs it ran
    assert result.status == LuigiStatusCode.SCHEDULING_FAILED, result.summary_text
    assert runs(log) == []
    assert archived(env) == []
    with pytest.raises(ConfigError) as err:
        task.requires().complete()
    assert str(err.value) == expected
    # a worker that did not schedule it checks again before the work
    with pytest.raises(ConfigError, match="datatype"):
        task.requires().run()
    assert runs(log) == [] and archived(env) == []
    # a datatype named in [nbank] settles it
    forget()
    env.registry.add_datatype(f"named-{uniq}", "text/plain")
    set_config(nbank={"dtype": f"named-{uniq}"})
    assert build([task], luigid).status == LuigiStatusCode.SUCCESS
    assert len(runs(log)) == 2


def test_an_unknown_or_missing_datatype_fails_before_run(env, uniq, tmp_path):
    log = tmp_path / "runs.log"
    # no extension and no datatype
    task = Typed(name=f"nx{uniq}", ext="", run_log=str(log))
    assert build([task]).status == LuigiStatusCode.SCHEDULING_FAILED
    with pytest.raises(ConfigError, match="no datatype for output"):
        task.complete()
    # a datatype named that is not registered
    forget()
    set_config(nbank={"dtype": f"nope-{uniq}"})
    assert build([task]).status == LuigiStatusCode.SCHEDULING_FAILED
    with pytest.raises(NotFound):
        task.complete()
    assert runs(log) == [] and archived(env) == []


def test_datatypes_are_asked_once_per_schedule(env, monkeypatch, uniq, tmp_path):
    ext = f".m{uniq[:7]}"
    env.registry.add_datatype(f"many-{uniq}", "text/plain", ext[1:])
    tasks = [Typed(name=f"mt{k}{uniq}", ext=ext) for k in range(8)]
    with count_requests(monkeypatch) as counts:
        assert build(tasks).status == LuigiStatusCode.SUCCESS
    # checking before the runs asks once for all 8 outputs; the deposits (the
    # core) check a datatype once per registry object, not once per output
    assert counts["list_datatypes"] == 1, counts
    assert 1 <= counts["get_datatype"] <= 2, counts
    assert len(env.registry.get_resources(f"mt{k}{uniq}" for k in range(8))) == 8


@pytest.mark.slow
def test_luigi_command_prints_the_message_once_and_runs_nothing(
    archive, uniq, tmp_path
):
    ext = f".c{uniq[:7]}"
    expected = _message(archive, ext)
    cfg = write_cfg(tmp_path / "luigi.cfg", archive=archive.path)
    auth = {k: v for k, v in archive.backend.env.items() if k == "NBANK_AUTH"}
    log = tmp_path / "runs.log"
    args = ["AfterTyped", "--name", f"ct{uniq}", "--ext", ext, "--run-log", str(log)]
    proc = run(luigi_cmd(*args, "--local-scheduler"), luigi_env(cfg, **auth), tmp_path)
    assert proc.returncode == RETCODES["scheduling_error"], proc.stderr
    assert proc.stderr.count(expected) == 1, proc.stderr
    assert runs(log) == [] and archived(archive) == []
