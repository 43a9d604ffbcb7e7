"""The Registry contract, run over every backend: the embedded SQLite registry and a
real django-neurobank on loopback (``http_registry``, page size 3).

The server is shared by the whole session, so every test names its records with a
random ``uniq`` suffix and random sha1s. Tests after the contract are for the
embedded registry only: identifiers (hypothesis), threads, processes, lifetime.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import re
import secrets
import sqlite3
import threading
import time
import warnings
from datetime import datetime
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbank_core.errors import AlreadyExists, NotFound, RegistryError, RegistryRejected
from nbank_core.registry import open_registry
from nbank_core.registry.sqlite import SCHEMA_VERSION, SqliteRegistry

RESOURCE_KEYS = {
    "name",
    "sha1",
    "dtype",
    "filename",
    "metadata",
    "experimenter",
    "animal",
    "locations",
    "created_by",
    "created_on",
}
LOCATION_KEYS = {"archive_name", "scheme", "root", "resource_name", "key"}


@pytest.fixture(params=["sqlite", "http"])
def registry(request, tmp_path):
    """Each backend in turn: a fresh SQLite file, or the session's server."""
    if request.param == "http":
        yield request.getfixturevalue("http_registry")
        return
    reg = SqliteRegistry(tmp_path / "reg.sqlite")
    yield reg
    reg.close()


def new_sha1() -> str:
    return secrets.token_hex(20)


@pytest.fixture
def env(registry, uniq):
    """A registry with one datatype (extension 'wav') and two archives."""
    dtype, archive, other = f"wav-{uniq}", f"arch-{uniq}", f"other-{uniq}"
    registry.add_datatype(dtype, "audio/wav", "wav")
    registry.add_archive(archive, f"/data/{uniq}/main")
    registry.add_archive(other, f"/data/{uniq}/other", accessibility="remote")
    return SimpleNamespace(
        reg=registry, uniq=uniq, dtype=dtype, archive=archive, other=other
    )


def names(records) -> list[str]:
    return [record["name"] for record in records]


def names_of(locations) -> list[str]:
    return [loc["archive_name"] for loc in locations]


# -- the registry and its datatypes and archives ---------------------------------
def test_info(registry):
    info = registry.info()
    assert set(info) == {"name", "version", "api_version"}
    assert info["api_version"] == "1.2"


def test_datatypes(registry, uniq):
    rec = registry.add_datatype(f"dt-{uniq}", "text/plain")
    assert rec == {"name": f"dt-{uniq}", "content_type": "text/plain", "extension": ""}
    registry.add_datatype(f"at-{uniq}", "audio/wav", "wav")
    assert registry.get_datatype(f"dt-{uniq}") == rec
    listed = [d for d in registry.list_datatypes() if d["name"].endswith(uniq)]
    assert names(listed) == [f"at-{uniq}", f"dt-{uniq}"]
    with pytest.raises(AlreadyExists):
        registry.add_datatype(f"dt-{uniq}", "text/csv")
    with pytest.raises(NotFound):
        registry.get_datatype(f"nosuch-{uniq}")
    with pytest.raises(RegistryRejected):
        registry.add_datatype(f"bad.{uniq}", "text/plain")


def test_archives(registry, uniq):
    root = f"/data/{uniq}/Main"
    rec = registry.add_archive(f"a-{uniq}", root)
    assert rec == {
        "name": f"a-{uniq}",
        "scheme": "neurobank",
        "root": root,
        "accessibility": "local",
    }
    registry.add_archive(f"b-{uniq}", f"/data/{uniq}/b", accessibility="offline")
    assert registry.get_archive(f"a-{uniq}") == rec
    assert registry.get_archive(f"b-{uniq}")["accessibility"] == "offline"
    assert names(registry.list_archives(name="a-" + uniq[:6])) == [f"a-{uniq}"]
    assert names(registry.list_archives(name=f"b-{uniq}")) == [f"b-{uniq}"]
    assert registry.list_archives(root=root) == [rec]
    assert registry.list_archives(root=root.upper()) == [rec]
    assert registry.list_archives(root=root[:-1]) == []
    assert registry.find_archive_by_root(root) == rec
    assert registry.find_archive_by_root(f"/data/{uniq}/nosuch") is None
    assert registry.find_archive_by_root(root, scheme="other") is None
    with pytest.raises(AlreadyExists):
        registry.add_archive(f"a-{uniq}", f"/data/{uniq}/elsewhere")
    with pytest.raises(AlreadyExists):
        registry.add_archive(f"c-{uniq}", root)
    with pytest.raises(NotFound):
        registry.get_archive(f"nosuch-{uniq}")
    with pytest.raises(RegistryRejected):
        registry.add_archive(f"bad.{uniq}", f"/data/{uniq}/bad")
    with pytest.raises(RegistryRejected):
        registry.add_archive("x" * 33, f"/data/{uniq}/long")
    odd = registry.add_archive(f"d-{uniq}", f"/data/{uniq}/d", accessibility="odd")
    assert odd["accessibility"] == "local"  # as the server: unknown means local
    other = registry.add_archive(f"e-{uniq}", f"/data/{uniq}/e", scheme=f"s{uniq}")
    assert registry.list_archives(scheme=f"S{uniq}"[:9]) == [other]


# -- resources --------------------------------------------------------------------
def test_add_resource(env):
    sha1 = new_sha1()
    rec = env.reg.add_resource(
        f"r-{env.uniq}", env.dtype, env.archive, sha1=sha1.upper(), metadata={"x": 1}
    )
    assert set(rec) == RESOURCE_KEYS
    assert rec["name"] == f"r-{env.uniq}"
    assert rec["sha1"] == sha1
    assert rec["dtype"] == env.dtype
    assert rec["filename"] == f"r-{env.uniq}.wav"
    assert rec["metadata"] == {"x": 1}
    kept = env.reg.add_resource(
        f"k-{env.uniq}",
        env.dtype,
        env.archive,
        metadata={"k": None, "accessibility": "x"},
    )
    assert kept["metadata"] == {"k": None, "accessibility": "x"}
    assert rec["experimenter"] is None and rec["animal"] is None
    assert rec["locations"] == [env.archive]
    assert isinstance(rec["created_by"], str)
    assert datetime.fromisoformat(rec["created_on"]).utcoffset().total_seconds() == 0
    assert env.reg.get_resource(f"r-{env.uniq}") == rec


def test_add_resource_without_metadata_stores_null(env):
    rec = env.reg.add_resource(f"r-{env.uniq}", env.dtype, env.archive)
    assert rec["metadata"] is None and rec["sha1"] is None
    empty = env.reg.add_resource(f"e-{env.uniq}", env.dtype, env.archive, metadata={})
    assert empty["metadata"] == {}


def test_auto_id(env):
    rec = env.reg.add_resource(None, env.dtype, env.archive, sha1=new_sha1())
    assert re.fullmatch(r"[0-9a-z]{8}", rec["name"])
    assert rec["filename"] == rec["name"] + ".wav"
    assert env.reg.get_resource(rec["name"]) == rec


def test_add_resource_refusals(env):
    sha1 = new_sha1()
    name = f"r-{env.uniq}"
    env.reg.add_resource(name, env.dtype, env.archive, sha1=sha1)
    with pytest.raises(AlreadyExists):
        env.reg.add_resource(name, env.dtype, env.archive)
    with pytest.raises(AlreadyExists):
        env.reg.add_resource(f"s-{env.uniq}", env.dtype, env.archive, sha1=sha1)
    with pytest.raises(AlreadyExists):
        env.reg.add_resource(f"s-{env.uniq}", env.dtype, env.archive, sha1=sha1.upper())
    with pytest.raises(NotFound):
        env.reg.add_resource(f"t-{env.uniq}", f"nosuch-{env.uniq}", env.archive)
    with pytest.raises(NotFound):
        env.reg.add_resource(f"t-{env.uniq}", env.dtype, f"nosuch-{env.uniq}")
    with pytest.raises(RegistryRejected):
        env.reg.add_resource(f"t-{env.uniq}", env.dtype, env.archive, metadata=[1])
    for bad_sha1 in ("g" * 40, "a" * 39, "a" * 41, ""):
        with pytest.raises(RegistryRejected):
            env.reg.add_resource(f"t-{env.uniq}", env.dtype, env.archive, sha1=bad_sha1)
    with pytest.raises(NotFound):
        env.reg.get_resource(f"t-{env.uniq}")


@pytest.mark.parametrize(
    "bad", ["bad.name", "a/b", "with space", " lead", "tilde~", "naïve", "", "x" * 256]
)
def test_invalid_resource_name(env, bad):
    name = bad if bad in ("", "x" * 256) else f"{bad}-{env.uniq}"
    with pytest.raises(RegistryRejected):
        env.reg.add_resource(name, env.dtype, env.archive)


def test_longest_name(env):
    name = (env.uniq * 40)[:255]
    assert env.reg.add_resource(name, env.dtype, env.archive)["name"] == name


def test_experimenter_in_metadata(env):
    first = env.reg.add_resource(f"a-{env.uniq}", env.dtype, env.archive)
    user = first["created_by"]  # a user the server knows
    rec = env.reg.add_resource(
        f"b-{env.uniq}", env.dtype, env.archive, metadata={"experimenter": user, "x": 1}
    )
    assert rec["experimenter"] == user
    assert rec["metadata"] == {"x": 1, "experimenter": user}
    assert names(env.reg.search(name=env.uniq, experimenter=user)) == [rec["name"]]
    found = names(env.reg.search(name=env.uniq, metadata__experimenter=user))
    assert found == [rec["name"]]
    assert names(env.reg.search(name=env.uniq, experimenter__neq=user)) == [
        first["name"]
    ]
    cleared = env.reg.update_metadata(rec["name"], {"experimenter": None})
    assert cleared["experimenter"] is None and cleared["metadata"] == {"x": 1}


def test_get_unknown(registry, uniq):
    with pytest.raises(NotFound):
        registry.get_resource(f"nosuch-{uniq}")


def test_bulk_get_and_locate(env):
    recs = [
        env.reg.add_resource(f"{i}-{env.uniq}", env.dtype, env.archive, sha1=new_sha1())
        for i in range(5)
    ]
    wanted = [r["name"] for r in recs[:4]] + [f"nosuch-{env.uniq}"]
    got = env.reg.get_resources(wanted)
    assert got == {r["name"]: r for r in recs[:4]}
    assert env.reg.get_resources([]) == {}
    env.reg.add_location(recs[0]["name"], env.other, key="k0")
    env.reg.remove_location(recs[1]["name"], env.archive)  # no location left
    located = env.reg.locate_resources(wanted)
    assert set(located) == {recs[0]["name"], recs[2]["name"], recs[3]["name"]}
    first = located[recs[0]["name"]]
    assert set(first) == {"name", "sha1", "filename", "locations"}
    assert first["sha1"] == recs[0]["sha1"]
    assert first["filename"] == recs[0]["filename"]
    assert first["locations"] == [
        {
            "archive_name": env.archive,
            "scheme": "neurobank",
            "root": f"/data/{env.uniq}/main",
            "resource_name": recs[0]["name"],
            "key": None,
        },
        {
            "archive_name": env.other,
            "scheme": "neurobank",
            "root": f"/data/{env.uniq}/other",
            "resource_name": recs[0]["name"],
            "key": "k0",
        },
    ]


def test_search(env):
    u, reg = env.uniq, env.reg
    meta = [
        {"site": 3},
        {"site": "3"},
        {"site": 4, "s": "ABC"},
        {},
        None,
        {"site": 3.0},
    ]
    order = [4, 0, 6, 2, 5, 1, 3]
    added = {}
    for i in order:  # added out of order: results come back sorted by name
        name = f"{u}-{i}"
        added[name] = reg.add_resource(
            name, env.dtype, env.archive, sha1=new_sha1(), metadata=meta[i % 6]
        )
    everything = sorted(added)
    assert names(reg.search(name=u)) == everything  # more than one page
    assert list(reg.search(name=u)) == [added[n] for n in everything]
    assert names(reg.search(name=u.upper())) == everything
    assert names(reg.search(dtype=u[2:].upper())) == everything
    assert names(reg.search(name=u, dtype=f"nosuch-{u}")) == []
    assert names(reg.search(name=f"{u}-2")) == [f"{u}-2"]
    sha1 = added[f"{u}-5"]["sha1"]
    assert names(reg.search(sha1=sha1.upper())) == [f"{u}-5"]
    assert reg.find_sha1(sha1.upper()) == added[f"{u}-5"]
    assert reg.find_sha1(new_sha1()) is None
    assert names(reg.search(sha1_contains=sha1[5:20])) == [f"{u}-5"]
    reg.add_location(f"{u}-3", env.other)
    assert names(reg.search(archive=env.other)) == [f"{u}-3"]
    assert names(reg.search(archive=env.other.upper())) == []
    assert names(reg.search(location=env.other[:8].upper())) == [f"{u}-3"]
    assert names(reg.search(name=u, nosuch_filter="x")) == everything
    assert names(reg.search(name=u, metadata__site=3)) == [f"{u}-0", f"{u}-5", f"{u}-6"]
    assert names(reg.search(name=u, metadata__site="3")) == names(
        reg.search(name=u, metadata__site=3)
    )
    assert names(reg.search(name=u, metadata__site='"3"')) == [f"{u}-1"]
    assert names(reg.search(name=u, metadata__s="ABC")) == [f"{u}-2"]
    # as the server: a key missing from a metadata dict does not match __neq,
    # null metadata does
    assert names(reg.search(name=u, metadata__site__neq=3)) == [
        f"{u}-1",
        f"{u}-2",
        f"{u}-4",
    ]
    assert names(reg.search(name=u, metadata__site__isnull=True)) == [
        f"{u}-3",
        f"{u}-4",
    ]
    assert names(reg.search(name=u, metadata__s__icontains="b")) == [f"{u}-2"]
    reg.remove_location(f"{u}-4", env.archive)
    assert names(reg.search(name=u, has_location=False)) == [f"{u}-4"]
    assert f"{u}-4" not in names(reg.search(name=u, has_location=True))


def test_update_metadata(env):
    name = f"r-{env.uniq}"
    env.reg.add_resource(name, env.dtype, env.archive, metadata={"a": 1, "b": 2})
    rec = env.reg.update_metadata(name, {"b": None, "c": {"d": [1, 2]}, "e": "x"})
    assert rec["metadata"] == {"a": 1, "c": {"d": [1, 2]}, "e": "x"}
    assert env.reg.get_resource(name) == rec
    plain = f"p-{env.uniq}"
    env.reg.add_resource(plain, env.dtype, env.archive)
    assert env.reg.update_metadata(plain, {"a": 1})["metadata"] == {"a": 1}
    with pytest.raises(NotFound):
        env.reg.update_metadata(f"nosuch-{env.uniq}", {"a": 1})
    with pytest.raises(RegistryRejected):
        env.reg.update_metadata(name, [1])


def test_delete_resource(env):
    name, sha1 = f"r-{env.uniq}", new_sha1()
    env.reg.add_resource(name, env.dtype, env.archive, sha1=sha1)
    env.reg.add_location(name, env.other)
    env.reg.delete_resource(name)
    with pytest.raises(NotFound):
        env.reg.get_resource(name)
    with pytest.raises(NotFound):
        env.reg.delete_resource(name)
    with pytest.raises(NotFound):
        env.reg.list_locations(name)
    assert env.reg.find_sha1(sha1) is None
    again = env.reg.add_resource(name, env.dtype, env.archive, sha1=sha1)
    assert again["locations"] == [env.archive]


def test_locations(env):
    name = f"r-{env.uniq}"
    env.reg.add_resource(name, env.dtype, env.other)
    main = {
        "archive_name": env.archive,
        "scheme": "neurobank",
        "root": f"/data/{env.uniq}/main",
        "resource_name": name,
        "key": "sub/r.wav",
    }
    assert env.reg.add_location(name, env.archive, key="sub/r.wav") == main
    listed = env.reg.list_locations(name)
    assert listed[0] == main  # local archives first
    assert [loc["archive_name"] for loc in listed] == [env.archive, env.other]
    assert all(set(loc) == LOCATION_KEYS for loc in listed)
    assert env.reg.get_resource(name)["locations"] == sorted([env.archive, env.other])
    with pytest.raises(AlreadyExists):
        env.reg.add_location(name, env.archive)
    with pytest.raises(NotFound):
        env.reg.add_location(name, f"nosuch-{env.uniq}")
    with pytest.raises(NotFound):
        env.reg.add_location(f"nosuch-{env.uniq}", env.archive)
    with pytest.raises(NotFound):
        env.reg.list_locations(f"nosuch-{env.uniq}")
    env.reg.remove_location(name, env.archive)
    assert names_of(env.reg.list_locations(name)) == [env.other]
    with pytest.raises(NotFound):
        env.reg.remove_location(name, env.archive)
    with pytest.raises(NotFound):
        env.reg.remove_location(f"nosuch-{env.uniq}", env.archive)
    assert env.reg.add_location(name, env.archive, key="")["key"] is None


def test_location_keys_are_unique_per_archive(env):
    env.reg.add_resource(f"a-{env.uniq}", env.dtype, env.other)
    env.reg.add_resource(f"b-{env.uniq}", env.dtype, env.other)
    env.reg.add_location(f"a-{env.uniq}", env.archive, key="same")
    with pytest.raises(AlreadyExists):
        env.reg.add_location(f"b-{env.uniq}", env.archive, key="same")
    assert names_of(env.reg.list_locations(f"b-{env.uniq}")) == [env.other]


def test_pickle_round_trip(env):
    name = f"r-{env.uniq}"
    rec = env.reg.add_resource(name, env.dtype, env.archive)
    copy = pickle.loads(pickle.dumps(env.reg))
    try:
        assert copy.url == env.reg.url
        assert copy.get_resource(name) == rec
        copy.add_resource(f"s-{env.uniq}", env.dtype, env.archive)
        assert env.reg.get_resource(f"s-{env.uniq}")["name"] == f"s-{env.uniq}"
    finally:
        copy.close()


# -- the embedded registry only -----------------------------------------------------
@pytest.fixture
def sqlite_env(tmp_path):
    reg = SqliteRegistry(tmp_path / "sub" / "dir" / "reg.sqlite")
    reg.add_datatype("wav", "audio/wav", "wav")
    reg.add_archive("lab", "/data/lab")
    yield reg
    reg.close()


VALID_ID = st.from_regex(r"[-a-zA-Z0-9_]{1,255}", fullmatch=True)


@given(name=VALID_ID)
@settings(max_examples=60, deadline=None)
def test_valid_ids_round_trip(name):
    with SqliteRegistry(":memory:") as reg:
        reg.add_datatype("wav", "audio/wav", ".wav")
        reg.add_archive("lab", "/data/lab")
        rec = reg.add_resource(name, "wav", "lab")
        assert reg.get_resource(name) == rec
        assert rec["filename"] == name + ".wav"
        assert names(reg.search(name=name)) == [name]


@given(
    name=st.text(min_size=0, max_size=300).filter(
        lambda s: re.fullmatch(r"[-a-zA-Z0-9_]{1,255}", s) is None
    )
)
@settings(max_examples=60, deadline=None)
def test_invalid_ids_refused(name):
    with SqliteRegistry(":memory:") as reg:
        reg.add_datatype("wav", "audio/wav")
        reg.add_archive("lab", "/data/lab")
        with pytest.raises(RegistryRejected):
            reg.add_resource(name, "wav", "lab")
        with pytest.raises(NotFound):
            reg.get_resource(name)
        assert reg.get_resources([name]) == {}


def test_lazy_and_url(tmp_path):
    path = tmp_path / "a" / "b" / "reg.sqlite"
    reg = SqliteRegistry(path)
    assert reg.url == f"sqlite://{path}"
    assert not path.parent.exists()
    assert reg.info()["name"] == "neurobank embedded registry"
    assert not path.parent.exists()
    assert reg.list_datatypes() == []
    assert path.exists()
    reg.close()
    reg.close()
    assert reg.list_datatypes() == []  # reopens after close
    reg.close()
    with open_registry("sqlite:///:memory:") as mem:
        assert mem.url == "sqlite:///:memory:"


def test_pragmas_and_schema_version(sqlite_env, tmp_path):
    with sqlite_env._db.transaction() as conn:
        pragma = {
            name: conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout", "user_version")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL: no fsync per commit
        "busy_timeout": 30000,
        "user_version": SCHEMA_VERSION,
    }
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with SqliteRegistry(newer) as reg, pytest.raises(RegistryError, match="upgrade"):
        reg.list_datatypes()


def test_animal_and_reserved_metadata(sqlite_env):
    rec = sqlite_env.add_resource(
        "r1", "wav", "lab", metadata={"animal": "st32", "experimenter": "dm"}
    )
    assert (rec["animal"], rec["experimenter"]) == ("st32", "dm")
    assert rec["metadata"] == {"animal": "st32", "experimenter": "dm"}
    sqlite_env.add_resource("r2", "wav", "lab", metadata={"animal": "other"})
    assert names(sqlite_env.search(animal="st32")) == ["r1"]
    assert names(sqlite_env.search(metadata__animal__neq="st32")) == ["r2"]
    assert names(sqlite_env.search(animal__istartswith="ST")) == ["r1"]
    assert names(sqlite_env.search(experimenter__isnull=True)) == ["r2"]
    rec = sqlite_env.update_metadata("r1", {"animal": None})
    assert rec["animal"] is None and rec["metadata"] == {"experimenter": "dm"}
    with pytest.raises(RegistryRejected):
        sqlite_env.add_resource("r3", "wav", "lab", metadata={"animal": 3})


def test_search_refuses_unsupported_lookups(sqlite_env):
    with pytest.raises(RegistryRejected, match="unsupported"):
        sqlite_env.search(metadata__site__gt=3)
    with pytest.raises(RegistryRejected, match="true or false"):
        sqlite_env.search(metadata__site__isnull="maybe")


def test_bulk_in_chunks(sqlite_env):
    for i in range(1200):
        sqlite_env.add_resource(f"r{i:04}", "wav", "lab")
    wanted = [f"r{i:04}" for i in range(0, 1200)] + ["nosuch"]
    assert len(sqlite_env.get_resources(wanted)) == 1200
    assert len(sqlite_env.locate_resources(wanted)) == 1200
    assert len(list(sqlite_env.search(dtype="wav"))) == 1200


def test_thousand_adds_are_fast(sqlite_env):
    start = time.perf_counter()
    for _ in range(1000):
        sqlite_env.add_resource(None, "wav", "lab")
    assert time.perf_counter() - start < 3.0  # ~0.2 s: no fsync per commit


def test_memory_registry_cannot_be_pickled():
    with SqliteRegistry(":memory:") as reg, pytest.raises(TypeError, match="memory"):
        pickle.dumps(reg)


@pytest.mark.parametrize("path", ["file", ":memory:"])
def test_threads(tmp_path, path):
    reg = SqliteRegistry(tmp_path / "reg.sqlite" if path == "file" else path)
    reg.add_datatype("wav", "audio/wav")
    reg.add_archive("lab", "/data/lab")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                reg.add_resource(f"t{t}-{i}", "wav", "lab", metadata={"t": t})
                assert reg.get_resource(f"t{t}-{i}")["metadata"] == {"t": t}
                assert len(list(reg.search(metadata__t=t))) == i + 1
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list(reg.search())) == 400
    reg.close()


def _add_many(reg: SqliteRegistry, seed: int, barrier, queue) -> None:
    """Process body: registers 200 names that every process also tries."""
    won, lost, errors = [], 0, []
    try:
        for add in (
            lambda: reg.add_datatype("wav", "audio/wav"),
            lambda: reg.add_archive("lab", "/data/lab"),
        ):
            try:
                add()
            except AlreadyExists:
                pass
        todo = [f"mp-{i}" for i in range(200)]
        random.Random(seed).shuffle(todo)
        barrier.wait()
        for name in todo:
            try:
                reg.add_resource(name, "wav", "lab", metadata={"by": seed})
                won.append(name)
            except AlreadyExists:
                lost += 1
    except BaseException as err:
        errors.append(repr(err))
    finally:
        reg.close()
        queue.put((won, lost, errors))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes(tmp_path, method):
    reg = SqliteRegistry(tmp_path / "reg.sqlite")
    if method == "fork":  # the children inherit an open connection
        reg.add_datatype("wav", "audio/wav")
    ctx = multiprocessing.get_context(method)
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_add_many, args=(reg, seed, barrier, queue))
        for seed in range(4)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        for proc in procs:
            proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    queue.close()
    queue.join_thread()
    assert [errors for _, _, errors in results] == [[], [], [], []]
    won = [name for names_, _, _ in results for name in names_]
    assert sorted(won) == sorted(f"mp-{i}" for i in range(200))
    assert sum(lost for _, lost, _ in results) == 600
    records = reg.get_resources(f"mp-{i}" for i in range(200))
    assert len(records) == 200
    assert reg.list_datatypes()[0]["name"] == "wav"
    assert reg.get_resource("mp-0")["locations"] == ["lab"]  # parent's connection
    reg.close()
    assert os.path.exists(tmp_path / "reg.sqlite")
