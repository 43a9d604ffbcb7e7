"""``nbank check``: each kind of damage is found, and ``--fix`` repairs what it may."""

from __future__ import annotations

import os
import stat

from nbank_core import deposit
from nbank_core.check import check_archive
from nbank_core.transaction import staged_name


def _deposit(archive, tmp_path, name, data=None):
    src = tmp_path / "src" / f"{name}.txt"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(data if data is not None else name.encode())
    (r,) = deposit(archive.path, [src], dtype=archive.dtype, registry=archive.registry)
    assert r.ok, r.error
    return r


def _kinds(findings):
    return sorted((f.kind, f.id) for f in findings)


def test_a_clean_archive_has_no_findings(archive, tmp_path, uniq):
    _deposit(archive, tmp_path, f"ok{uniq}")
    assert check_archive(archive.path, registry=archive.registry) == []


def test_interrupted_before_registration_is_rolled_back(archive, tmp_path, uniq):
    src = tmp_path / f"early{uniq}.txt"
    src.write_bytes(b"early")
    staged = archive.cfg.staging_dir / staged_name(f"early{uniq}", ".txt")
    os.link(src, staged)  # what a crash right after staging leaves
    found = check_archive(archive.path, registry=archive.registry)
    assert _kinds(found) == [("staging-leftover", f"early{uniq}")]
    fixed = check_archive(archive.path, registry=archive.registry, fix=True)
    assert all(f.fixed for f in fixed)
    assert not staged.exists() and src.read_bytes() == b"early"
    assert check_archive(archive.path, registry=archive.registry) == []


def test_interrupted_after_registration_is_completed(archive, tmp_path, uniq):
    r = _deposit(archive, tmp_path, f"late{uniq}", b"late" + uniq.encode())
    # a crash between registration and publication: the staged link survives
    staged = archive.cfg.staging_dir / staged_name(r.id, ".txt")
    os.link(r.path, staged)
    os.unlink(r.path)
    found = check_archive(archive.path, registry=archive.registry)
    assert _kinds(found) == [("missing", r.id), ("staging-leftover", r.id)]
    fixed = check_archive(archive.path, registry=archive.registry, fix=True)
    assert [f.kind for f in fixed if f.fixed] == ["staging-leftover"]
    assert r.path.read_bytes() == b"late" + uniq.encode() and not staged.exists()
    assert check_archive(archive.path, registry=archive.registry) == []


def test_a_record_whose_file_is_gone_is_withdrawn(archive, tmp_path, uniq):
    r = _deposit(archive, tmp_path, f"gone{uniq}")
    os.unlink(r.path)
    assert _kinds(check_archive(archive.path, registry=archive.registry)) == [
        ("missing", r.id)
    ]
    check_archive(archive.path, registry=archive.registry, fix=True)
    assert archive.registry.get_resources([r.id]) == {}
    assert check_archive(archive.path, registry=archive.registry) == []


def test_permissions_drift_is_repaired(archive, tmp_path, uniq):
    r = _deposit(archive, tmp_path, f"perm{uniq}")
    os.chmod(r.path, 0o666)
    found = check_archive(archive.path, registry=archive.registry, fix=True)
    assert _kinds(found) == [("permissions", r.id)] and found[0].fixed
    assert stat.S_IMODE(r.path.stat().st_mode) & 0o222 == 0


def test_changed_content_and_strays_are_reported_not_touched(archive, tmp_path, uniq):
    r = _deposit(archive, tmp_path, f"hash{uniq}", b"original" + uniq.encode())
    os.chmod(r.path, 0o644)
    r.path.write_bytes(b"tampered")
    os.chmod(r.path, 0o444)
    stray = archive.cfg.shard_dir("zz") / "zzstray.txt"
    stray.parent.mkdir(mode=0o2775)
    stray.write_bytes(b"stray")
    os.chmod(stray, 0o444)
    found = check_archive(archive.path, registry=archive.registry, fix=True)
    kinds = _kinds(found)
    assert ("hash-mismatch", r.id) in kinds and ("unregistered", "zzstray") in kinds
    assert not any(
        f.fixed for f in found if f.kind in ("hash-mismatch", "unregistered")
    )
    assert r.path.read_bytes() == b"tampered" and stray.read_bytes() == b"stray"


def test_fast_mode_hashes_only_what_changed(archive, tmp_path, uniq):
    r = _deposit(archive, tmp_path, f"fast{uniq}", b"abc" + uniq.encode())
    assert check_archive(archive.path, registry=archive.registry) == []
    # same size and mtime, different bytes: only a full check can see it
    st = r.path.stat()
    os.chmod(r.path, 0o644)
    r.path.write_bytes(b"abd" + uniq.encode())
    os.chmod(r.path, 0o444)
    os.utime(r.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert check_archive(archive.path, registry=archive.registry, fast=True) == []
    full = check_archive(archive.path, registry=archive.registry)
    assert _kinds(full) == [("hash-mismatch", r.id)]


def test_an_output_being_written_is_left_alone_and_a_dead_ones_removed(archive, uniq):
    import json
    import subprocess
    import sys

    from nbank_core import StagedOutput

    live = StagedOutput(archive.cfg, f"live{uniq}", ".csv")
    with live.open("w") as f:
        f.write("half written")
    # a writer that has exited left its output and journal behind
    code = (
        "import sys; from nbank_core import read_config, StagedOutput\n"
        f"o = StagedOutput(read_config({str(archive.path)!r}), 'dead{uniq}', '.csv')\n"
        "o.open('w').write('partial'); print(o.path)\n"
    )
    dead = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    findings = check_archive(archive.path, registry=archive.registry, fix=True)
    assert [f.id for f in findings] == [f"dead{uniq}"]
    assert findings[0].fixed and not os.path.exists(dead)
    assert live.path.read_text() == "half written"  # its writer still runs
    journals = list((archive.cfg.staging_dir / ".journal").iterdir())
    assert [json.loads(j.read_text()) for j in journals][0][live.path.name]["pid"]
    live.discard()
    assert check_archive(archive.path, registry=archive.registry, fix=True) == []
    assert list(archive.cfg.staging_dir.iterdir()) == []
