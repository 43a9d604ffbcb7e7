"""The one lookup cache (``Resolver``) and its policy, on both registries: hits
kept ``ttl`` seconds, misses asked again, misses fetched ahead kept
``miss_ttl`` seconds, and this process's deposits known at once. ``calls``
counts the bulk requests sent."""

from __future__ import annotations

from pathlib import Path

from nbank_core import DepositItem, Resolver, deposit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _deposit(archive, tmp_path: Path, name: str):
    src = tmp_path / "in" / f"{name}.txt"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(name)
    (result,) = deposit(
        archive.path, [DepositItem(src, name)], dtype=archive.dtype,
        registry=archive.registry,
    )  # fmt: skip
    assert result.ok, result.error
    return result


def test_a_hit_is_kept_for_ttl_then_asked_again(archive, tmp_path, uniq):
    ident = _deposit(archive, tmp_path, f"hit{uniq}").id
    clock = Clock()
    res = Resolver(archive.registry, ttl=10, clock=clock)
    assert res.cached(ident) is None
    assert res.locate(ident).path is not None and res.calls == 1
    clock.now += 9.9
    assert ident in res.locate_many([ident]) and res.calls == 1
    assert res.cached(ident) is not None
    clock.now += 0.2
    assert res.cached(ident) is None
    assert ident in res.locate_many([ident]) and res.calls == 2


def test_a_miss_is_asked_again_every_time(archive, uniq):
    res = Resolver(archive.registry, clock=Clock())
    for n in (1, 2, 3):
        assert res.locate_many([f"none{uniq}"]) == {}
        assert res.calls == n


def test_misses_fetched_ahead_answer_for_miss_ttl(archive, tmp_path, uniq):
    """An engine asks about an output several times before its job runs: ids it
    expects, found missing in one bulk request, answer from it for miss_ttl."""
    there = _deposit(archive, tmp_path, f"there{uniq}").id
    outputs = [f"out{uniq}_{i}" for i in range(3)]
    clock = Clock()
    res = Resolver(archive.registry, ttl=10, miss_ttl=1.0, clock=clock)
    res.expect(outputs)
    assert set(res.locate_many([there])) == {there} and res.calls == 1
    for _ in range(3):  # asked again and again within miss_ttl: no request
        for ident in outputs:
            assert res.locate_many([ident]) == {}
    assert res.calls == 1
    clock.now += 1.0
    assert res.locate_many([outputs[0]]) == {} and res.calls == 2
    assert res.locate_many([outputs[0]]) == {} and res.calls == 3  # not ahead now


def test_keep_misses_holds_the_misses_of_one_call(archive, uniq):
    clock = Clock()
    res = Resolver(archive.registry, miss_ttl=0.5, clock=clock)
    names = [f"k{uniq}_{i}" for i in range(4)]
    assert res.locate_many(names, keep_misses=True) == {} and res.calls == 1
    assert res.locate_many(names[1:3]) == {} and res.calls == 1
    clock.now += 0.5
    assert res.locate_many(names[1:3]) == {} and res.calls == 2


def test_a_deposit_of_this_process_overrides_a_miss_at_once(archive, tmp_path, uniq):
    name = f"late{uniq}"
    res = Resolver(archive.registry, clock=Clock())
    res.expect([name])
    assert res.locate_many([f"other{uniq}"]) == {} and res.calls == 1
    assert res.locate_many([name]) == {}  # the miss fetched ahead
    result = _deposit(archive, tmp_path, name)
    res.remember_deposit(result, archive.cfg)
    assert res.locate(name).path == result.path and res.calls == 1


def test_fresh_asks_whatever_is_cached(archive, tmp_path, uniq):
    ident = _deposit(archive, tmp_path, f"fr{uniq}").id
    res = Resolver(archive.registry, clock=Clock())
    res.locate(ident)
    res.locate_many([ident], fresh=True)
    assert res.calls == 2


def test_miss_ttl_is_never_longer_than_ttl(archive):
    assert Resolver(archive.registry, ttl=0.5, miss_ttl=3).miss_ttl == 0.5
