"""The deposit transaction, on both registries: what lands, and what a failure leaves."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from nbank_core import DepositItem, Resolver, deposit, sha1_path
from nbank_core.errors import AlreadyExists, PolicyError


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _snapshot(path: Path) -> tuple[int, int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_mode, st.st_gid, path.read_bytes()


def dep(archive, files, **kw):
    """Deposits into the test archive through its registry (with credentials)."""
    kw.setdefault("dtype", archive.dtype)
    return deposit(archive.path, files, registry=archive.registry, **kw)


def _staging_empty(archive) -> bool:
    return list(archive.cfg.staging_dir.iterdir()) == []


def test_files_move_into_the_archive_and_are_registered(archive, tmp_path, uniq):
    srcs = [
        _write(tmp_path / "in" / f"u{uniq}_{i}.wav", b"%d %s" % (i, uniq.encode()))
        for i in range(5)
    ]
    results = dep(archive, srcs, metadata={"site": 3})
    assert [r.status for r in results] == ["deposited"] * 5
    for i, (src, r) in enumerate(zip(srcs, results, strict=True)):
        assert not src.exists()
        assert r.path == archive.cfg.resource_path(r.id, ".wav")
        assert r.path.read_bytes() == b"%d %s" % (i, uniq.encode())
        mode = stat.S_IMODE(r.path.stat().st_mode)
        assert mode & 0o222 == 0 and mode & 0o444 == 0o444  # read-only resources
        record = archive.registry.get_resource(r.id)
        assert record["sha1"] == hashlib.sha1(b"%d %s" % (i, uniq.encode())).hexdigest()
        assert record["metadata"]["site"] == 3
        assert record["dtype"] == archive.dtype
    assert _staging_empty(archive)
    located = Resolver(archive.registry).locate_many([r.id for r in results])
    assert {k: v.path for k, v in located.items()} == {r.id: r.path for r in results}


def test_a_failed_registration_leaves_the_source_untouched(archive, tmp_path, uniq):
    first = _write(tmp_path / "a" / f"dup{uniq}.txt", b"one" + uniq.encode())
    assert dep(archive, [first])[0].ok
    again = _write(tmp_path / "b" / f"dup{uniq}.txt", b"two" + uniq.encode())
    before = _snapshot(again)
    (result,) = dep(archive, [again])
    assert not result.ok and isinstance(result.exception, AlreadyExists)
    assert "already registered" in result.error
    assert _snapshot(again) == before
    assert _staging_empty(archive)


def test_a_failed_publish_withdraws_the_record(archive, tmp_path, uniq):
    name = f"zz{uniq}"
    src = _write(tmp_path / f"{name}.txt", b"payload" + uniq.encode())
    before = _snapshot(src)
    # a plain file where the shard directory must go: publishing cannot succeed
    archive.cfg.shard_dir(name).write_bytes(b"in the way")
    (result,) = dep(archive, [src])
    assert not result.ok
    assert "registration was withdrawn" in result.error
    assert archive.registry.get_resources([name]) == {}
    assert _snapshot(src) == before  # same inode, mode, group and bytes
    assert _staging_empty(archive)


def test_a_batch_goes_on_past_bad_files(archive, tmp_path, uniq):
    good1 = _write(tmp_path / f"g1{uniq}.txt", b"g1" + uniq.encode())
    good2 = _write(tmp_path / f"g2{uniq}.txt", b"g2" + uniq.encode())
    bad_name = _write(tmp_path / f"bad name{uniq}.txt", b"x")
    link = tmp_path / f"ln{uniq}.txt"
    link.symlink_to(good1)
    missing = tmp_path / "missing.txt"
    files = [good1, missing, bad_name, link, good2]
    results = dep(archive, files)
    assert [r.status for r in results] == [
        "deposited",
        "failed",
        "failed",
        "failed",
        "deposited",
    ]
    assert "No such file" in results[1].error
    assert "invalid identifier" in results[2].error
    assert isinstance(results[3].exception, PolicyError)
    assert bad_name.exists() and link.is_symlink()


def test_same_content_under_the_same_id_is_idempotent(archive, tmp_path, uniq):
    src = _write(tmp_path / "out.txt", b"result" + uniq.encode())
    item = DepositItem(src, name=f"res{uniq}")
    kw = {"keep_source": True, "exist_ok": True}
    first = dep(archive, [item], **kw)[0]
    second = dep(archive, [item], **kw)[0]
    assert (first.status, second.status) == ("deposited", "exists")
    assert second.path == first.path and src.exists()
    src.write_bytes(b"other result" + uniq.encode())
    third = dep(archive, [item], **kw)[0]
    assert not third.ok and "different content" in third.error
    assert first.path.read_bytes() == b"result" + uniq.encode()


def test_auto_ids_come_from_the_registry(archive, tmp_path, uniq):
    src = _write(tmp_path / "whatever.txt", b"auto" + uniq.encode())
    (r,) = dep(archive, [src], auto_id=True)
    assert r.ok and len(r.id) == 8 and r.path.name == f"{r.id}.txt"


def test_dry_run_changes_nothing(archive, tmp_path, uniq):
    src = _write(tmp_path / f"dry{uniq}.txt", b"dry" + uniq.encode())
    (r,) = dep(archive, [src], dry_run=True)
    assert r.status == "dry-run" and src.exists() and not r.path.exists()
    assert archive.registry.get_resources([f"dry{uniq}"]) == {}


def test_directories_when_the_policy_allows_them(archive, tmp_path, uniq):
    doc = json.loads((archive.path / "nbank.json").read_text())
    d = tmp_path / f"dir{uniq}"
    _write(d / "a.txt", b"a")
    _write(d / "sub" / "b.txt", b"b")
    expected = sha1_path(d)
    (refused,) = dep(archive, [d])
    assert isinstance(refused.exception, PolicyError) and d.is_dir()
    doc["policy"]["allow_directories"] = True
    (archive.path / "nbank.json").write_text(json.dumps(doc))
    (r,) = dep(archive, [d])
    assert r.ok and not d.exists() and r.path.is_dir()
    assert sha1_path(r.path) == expected == r.sha1
    assert archive.registry.get_resource(r.id)["sha1"] == expected


def _other_filesystem(tmp_path: Path) -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        if shm.stat().st_dev != tmp_path.stat().st_dev:
            return shm
    return None


def test_across_filesystems_the_copy_is_verified(archive, tmp_path, uniq):
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second writable filesystem (/dev/shm) on this host")
    src = _write(other / f"x{uniq}" / f"xfs{uniq}.bin", os.urandom(3 << 20))
    digest = sha1_path(src)
    try:
        (r,) = dep(archive, [src])
        assert r.ok and r.sha1 == digest and sha1_path(r.path) == digest
        assert not src.exists()
        assert _staging_empty(archive)
    finally:
        for p in sorted(src.parent.rglob("*"), reverse=True):
            p.unlink()
        src.parent.rmdir()


def test_keep_source_copies(archive, tmp_path, uniq):
    src = _write(tmp_path / f"keep{uniq}.txt", b"keep" + uniq.encode())
    (r,) = dep(archive, [src], keep_source=True)
    assert r.ok and src.read_bytes() == b"keep" + uniq.encode()
    assert src.stat().st_ino != r.path.stat().st_ino
    assert stat.S_IMODE(src.stat().st_mode) & 0o200  # the source keeps its mode


def test_racing_deposits_of_the_same_content_agree(archive, tmp_path, uniq):
    """Eight deposits of one output at once (as engines on a shared filesystem
    do): one deposits, the others see it exists; none fails."""
    from concurrent.futures import ThreadPoolExecutor

    name = f"race{uniq}"
    srcs = [
        _write(tmp_path / f"w{i}" / "out.txt", b"same " + uniq.encode())
        for i in range(8)
    ]

    def one(src):
        return dep(
            archive, [DepositItem(src, name=name)], keep_source=True, exist_ok=True
        )[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, srcs))
    assert sorted(r.status for r in results) == ["deposited"] + ["exists"] * 7, [
        r.error for r in results
    ]
    assert len({r.path for r in results}) == 1
    assert archive.registry.get_resource(name)["locations"] == [f"arch-{uniq}"]
