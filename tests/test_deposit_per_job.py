"""What an engine's deposit of one job's output costs: the archive and datatype
checked once per registry object, no look-up of names before staging a link, no
journal when every source stays in place; and a deposit killed in the middle of
such a batch is still cleaned up by ``check --fix``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nbank_core import DepositItem, deposit, init_archive
from nbank_core.check import check_archive
from nbank_core.registry import open_registry
from nbank_core.registry.sqlite import SqliteRegistry

COUNTED = ("list_archives", "get_archive", "get_datatype", "get_resources")


def counting(reg: SqliteRegistry, calls: Counter) -> None:
    for name in (*COUNTED, "add_resource"):
        real = getattr(reg, name)

        def counted(*args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _real(*args, **kwargs)

        setattr(reg, name, counted)


def test_jobs_through_one_registry_check_the_archive_and_datatype_once(
    tmp_path: Path,
) -> None:
    with open_registry("sqlite://" + str(tmp_path / "r.sqlite"), create=True) as reg:
        cfg = init_archive(tmp_path / "archive", registry=reg, name="jobs")
        reg.add_datatype("out", "text/plain")
        calls: Counter = Counter()
        counting(reg, calls)
        for i in range(5):  # as the Snakemake plugin deposits each job's output
            out = tmp_path / "work" / f"job{i}.txt"
            out.parent.mkdir(exist_ok=True)
            out.write_text(f"output {i}")
            [r] = deposit(
                cfg,
                [DepositItem(out, name=f"job{i}")],
                dtype="out",
                registry=reg,
                link_source=True,
                exist_ok=True,
                derived=True,
                atomic=True,
            )
            assert r.status == "deposited", r.error
            assert not (cfg.staging_dir / ".journal").exists()
    assert calls["add_resource"] == 5
    assert calls["list_archives"] + calls["get_archive"] <= 1
    assert calls["get_datatype"] == 1
    assert calls["get_resources"] == 0  # the registry's write says a name is taken


def test_a_taken_name_is_still_refused_or_exists(tmp_path: Path) -> None:
    """Without the look-up first, the write itself reports a taken name: the same
    content is ``exists``, other content an error; the source stays."""
    with open_registry("sqlite://" + str(tmp_path / "r.sqlite"), create=True) as reg:
        cfg = init_archive(tmp_path / "archive", registry=reg, name="taken")
        reg.add_datatype("out", "text/plain")
        src = tmp_path / "a.txt"
        src.write_text("first")
        opts = dict(dtype="out", registry=reg, link_source=True, exist_ok=True)
        [first] = deposit(cfg, [DepositItem(src, name="t1")], **opts)
        [again] = deposit(cfg, [DepositItem(src, name="t1")], **opts)
        other = tmp_path / "b.txt"
        other.write_text("second")
        [clash] = deposit(cfg, [DepositItem(other, name="t1")], **opts)
    assert (first.status, again.status) == ("deposited", "exists")
    assert clash.status == "failed" and "different content" in (clash.error or "")
    assert other.read_text() == "second" and os.listdir(cfg.staging_dir) == []


KILLED_IN_REGISTRATION = """
import os, signal, sys
from nbank_core import DepositItem, deposit
from nbank_core.registry.sqlite import SqliteRegistry

def die(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

SqliteRegistry.add_resource = die
deposit(sys.argv[1], [DepositItem(sys.argv[2], name="killed")], dtype="out",
        link_source=True, exist_ok=True, derived=True, atomic=True)
"""


@pytest.mark.slow
def test_a_linked_output_killed_before_registration_is_cleaned_up(
    tmp_path: Path,
) -> None:
    with open_registry("sqlite://" + str(tmp_path / "r.sqlite"), create=True) as reg:
        cfg = init_archive(tmp_path / "archive", registry=reg, name="killed")
        reg.add_datatype("out", "text/plain")
    src = tmp_path / "out.txt"
    src.write_text("the job's output")
    died = subprocess.run(
        [sys.executable, "-c", KILLED_IN_REGISTRATION, str(cfg.path), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    staged = os.listdir(cfg.staging_dir)
    assert len(staged) == 1 and ".journal" not in staged  # a spare hard link
    findings = check_archive(cfg.path, fix=True)
    assert [f.kind for f in findings] == ["staging-leftover"]
    assert findings[0].fixed, findings[0].action
    assert os.listdir(cfg.staging_dir) == []
    assert src.read_text() == "the job's output" and os.stat(src).st_nlink == 1
    assert check_archive(cfg.path) == []
