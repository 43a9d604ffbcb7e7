"""Completeness is checked in bulk: scheduling many complete tasks takes a few
registry requests, not one per task (counted on both registries)."""

# ruff: noqa: F401, F811 - fixtures are imported from luigi_helpers

from __future__ import annotations

import datetime

import pytest
from luigi_helpers import (
    LuigiStatusCode,
    build,
    clean_luigi,
    clock,
    count_requests,
    forget,
    luigi,
    nbank_env,
    runs,
    set_config,
)
from luigi_tasks import Daily, Fan, Item, days
from nbank_luigi import prefetch

from nbank_core import DepositItem, deposit

N = 60
LOOKUPS = ("locate_resources", "get_resources", "get_resource")


def _deposit_items(archive, prefix: str, n: int) -> None:
    """Deposits what ``Item(prefix, i)`` would write, for i in range(n)."""
    src = archive.path.parent / "src"
    src.mkdir(exist_ok=True)
    items = []
    for i in range(n):
        path = src / f"{prefix}{i}"
        path.write_bytes(f"item {prefix}{i}\n".encode())
        items.append(DepositItem(path))
    results = deposit(
        archive.cfg, items, dtype=archive.dtype, registry=archive.registry
    )
    assert all(r.status == "deposited" for r in results)


def _lookups(counts) -> int:
    return sum(counts[name] for name in LOOKUPS)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["wrapper", "list"])
def test_scheduling_complete_tasks_takes_a_few_requests(
    nbank_env, monkeypatch, uniq, tmp_path, shape
):
    prefix = f"b{uniq}_"
    _deposit_items(nbank_env, prefix, N)
    log = tmp_path / "runs.log"
    forget()

    def tasks():
        if shape == "wrapper":
            return [Fan(prefix=prefix, n=N, run_log=str(log))]
        return [Item(prefix=prefix, i=i, run_log=str(log)) for i in range(N)]

    with count_requests(monkeypatch) as counts:
        result = build(tasks())
    assert result.status == LuigiStatusCode.SUCCESS
    assert runs(log) == []
    assert counts["locate_resources"] == 1, counts
    assert _lookups(counts) == 1
    if nbank_env.backend.kind == "http":
        assert counts["_request"] == 1  # N < 500: one POST to bulk/locations/

    # the same schedule, one request per task when prefetching is off
    forget()
    set_config(nbank={"prefetch": "false"})
    with count_requests(monkeypatch) as counts:
        assert build(tasks()).status == LuigiStatusCode.SUCCESS
    assert counts["locate_resources"] == N
    assert runs(log) == []


def test_missing_outputs_are_asked_again_and_then_run(nbank_env, monkeypatch, uniq):
    prefix = f"m{uniq}_"
    _deposit_items(nbank_env, prefix, 5)
    forget()
    with count_requests(monkeypatch) as counts:
        result = build([Fan(prefix=prefix, n=8)])
    assert result.status == LuigiStatusCode.SUCCESS
    found = nbank_env.registry.get_resources(f"{prefix}{i}" for i in range(8))
    assert len(found) == 8
    # one bulk lookup for scheduling; Fan.complete() stops at the first missing
    # Item, whose completeness luigi then asks again (a "missing" fetched ahead
    # answers for the resolver's miss_ttl); then one fresh check per task that ran
    assert counts["locate_resources"] == 1 + 3, counts


def test_prefetch_and_bulk_complete(nbank_env, monkeypatch, uniq):
    prefix = f"p{uniq}_"
    _deposit_items(nbank_env, prefix, 4)
    forget()
    tasks = [Item(prefix=prefix, i=i) for i in range(6)]
    with count_requests(monkeypatch) as counts:
        prefetch(tasks)
        assert [t.complete() for t in tasks] == [True] * 4 + [False] * 2
    # one bulk lookup (and one for the ids it did not find, to tell "not
    # registered" from "registered without a location")
    assert counts["locate_resources"] == 1 and _lookups(counts) == 2
    forget()
    with count_requests(monkeypatch) as counts:
        done = Item.bulk_complete([{"prefix": prefix, "i": i} for i in range(6)])
    assert done == [{"prefix": prefix, "i": i} for i in range(4)]
    assert counts["locate_resources"] == 1 and _lookups(counts) == 2


def test_range_tools_use_bulk_complete(nbank_env, monkeypatch, uniq):
    prefix = f"d{uniq}_"
    dates = days(datetime.date.today() - datetime.timedelta(days=10), 10)
    for d in dates[:6]:
        with Daily(date=d, prefix=prefix).output().open("w") as out:
            out.write(f"{prefix} {d}\n")
    forget()
    from luigi.tools.range import RangeDaily

    task = RangeDaily(
        of=Daily,
        of_params={"prefix": prefix},
        start=dates[0],
        stop=dates[-1],
        param_name="date",  # luigi's default (None) warns
    )
    with count_requests(monkeypatch) as counts:
        result = build([task])
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    names = [f"{prefix}{d:%Y%m%d}" for d in dates[:-1]]  # stop is exclusive
    assert len(nbank_env.registry.get_resources(names)) == 9
    # bulk_complete: 1 lookup, which also answers the checks of the 3 missing
    # days for the resolver's miss_ttl (the first of them is checked twice:
    # RangeDaily.complete() stops there, then the scheduler asks); then one
    # fresh check after each of the 3 runs
    assert counts["locate_resources"] == 1 + 3, counts


def test_stale_answers_are_asked_again_and_prefetched_together(
    nbank_env, monkeypatch, uniq, clock
):
    prefix = f"s{uniq}_"
    _deposit_items(nbank_env, prefix, 20)
    forget()
    tasks = [Item(prefix=prefix, i=i) for i in range(20)]
    with count_requests(monkeypatch) as counts:
        assert all(t.complete() for t in tasks)
        assert all(t.complete() for t in tasks)  # found: trusted for a while
        assert counts["locate_resources"] == 1, counts
        clock.now += 11  # longer than the core's ttl: every answer is stale now
        assert tasks[0].complete()
        assert counts["locate_resources"] == 2, counts
        prefetch(tasks)  # the rest, in one request
        assert all(t.complete() for t in tasks)
    assert counts["locate_resources"] == 3, counts


def test_a_slow_registry_does_not_make_answers_stale(
    nbank_env, monkeypatch, uniq, clock
):
    """Answers are as fresh as the moment they arrived, not when asked."""
    prefix = f"w{uniq}_"
    _deposit_items(nbank_env, prefix, 20)
    forget()
    cls = type(nbank_env.registry)
    slow = cls.locate_resources

    def locate_resources(self, names):
        clock.now += 60  # the answer takes longer than the ttl to come
        return slow(self, names)

    monkeypatch.setattr(cls, "locate_resources", locate_resources)
    with count_requests(monkeypatch) as counts:
        assert build([Fan(prefix=prefix, n=20)]).status == LuigiStatusCode.SUCCESS
    assert counts["locate_resources"] == 1, counts
