"""Derived outputs: identical content under different ids, still verifiable.

The registry's ``sha1`` field is unique and meant for sources, so engines deposit
with ``derived=True``: the content hash goes to the ``content_sha1`` metadata key.
The plain deposit (the command) keeps refusing a second source with the same
content, as the existing client does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from nbank_core import DepositItem, deposit, verify
from nbank_core.check import check_archive

NBANK = str(Path(sys.executable).with_name("nbank"))


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_identical_derived_outputs_are_all_deposited(archive, tmp_path, uniq):
    items = [
        DepositItem(_write(tmp_path / f"e{i}.csv", b""), name=f"empty{i}-{uniq}")
        for i in range(3)
    ]
    results = deposit(
        archive.path,
        items,
        dtype=archive.dtype,
        registry=archive.registry,
        derived=True,
    )
    assert [r.status for r in results] == ["deposited"] * 3, [r.error for r in results]
    empty = hashlib.sha1(b"").hexdigest()
    for r in results:
        record = archive.registry.get_resource(r.id)
        assert record["sha1"] is None
        assert record["metadata"]["content_sha1"] == empty
    # verifiable: verify lists every output with that content, check finds no fault
    named = verify(results[1].path, registry=archive.registry)
    assert [r["name"] for r in named] == [results[1].id]  # its own record first
    loose = _write(tmp_path / "copy.of.something", b"")
    found = verify(loose, registry=archive.registry)
    assert {r["name"] for r in found} >= {r.id for r in results}
    assert check_archive(archive.cfg, registry=archive.registry) == []


def test_a_rerun_compares_content(archive, tmp_path, uniq):
    name = f"out-{uniq}"
    first = _write(tmp_path / "a" / f"{name}.csv", b"1,2\n")
    (r,) = deposit(
        archive.path,
        [first],
        dtype=archive.dtype,
        registry=archive.registry,
        derived=True,
        keep_source=True,
    )
    assert r.status == "deposited"
    (same,) = deposit(
        archive.path,
        [first],
        dtype=archive.dtype,
        registry=archive.registry,
        derived=True,
        keep_source=True,
    )
    assert same.status == "exists" and same.path == r.path
    other = _write(tmp_path / "b" / f"{name}.csv", b"3,4\n")
    (diff,) = deposit(
        archive.path,
        [other],
        dtype=archive.dtype,
        registry=archive.registry,
        derived=True,
        keep_source=True,
    )
    assert diff.status == "failed" and "different content" in diff.error
    assert r.path.read_bytes() == b"1,2\n"


def test_check_finds_a_damaged_derived_output(archive, tmp_path, uniq):
    src = _write(tmp_path / f"d-{uniq}.csv", b"x,y\n")
    (r,) = deposit(
        archive.path,
        [src],
        dtype=archive.dtype,
        registry=archive.registry,
        derived=True,
    )
    os.chmod(r.path, 0o644)
    r.path.write_bytes(b"tampered\n")
    kinds = [f.kind for f in check_archive(archive.cfg, registry=archive.registry)]
    assert "hash-mismatch" in kinds


def test_the_command_still_refuses_duplicate_sources(archive, tmp_path, uniq):
    a = _write(tmp_path / f"s1-{uniq}.txt", b"same " + uniq.encode())
    b = _write(tmp_path / f"s2-{uniq}.txt", b"same " + uniq.encode())
    env = {**os.environ, **archive.backend.env}
    proc = subprocess.run(
        [NBANK, "deposit", "-d", archive.dtype, str(archive.path), str(a), str(b)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "sha1" in proc.stderr and b.exists() and not a.exists()


def test_a_jobs_outputs_are_deposited_all_or_nothing(archive, tmp_path, uniq):
    taken = _write(tmp_path / "t" / f"taken-{uniq}.csv", b"first\n")
    (r,) = deposit(
        archive.path,
        [taken],
        dtype=archive.dtype,
        registry=archive.registry,
        derived=True,
        keep_source=True,
    )
    good = _write(tmp_path / "j" / f"good-{uniq}.csv", b"good\n")
    clash = _write(tmp_path / "j" / f"taken-{uniq}.csv", b"other\n")
    results = deposit(
        archive.path,
        [good, clash],
        dtype=archive.dtype,
        registry=archive.registry,
        derived=True,
        keep_source=True,
        atomic=True,
    )
    assert [x.status for x in results] == ["failed", "failed"]
    assert "withdrawn" in results[0].error and "different content" in results[1].error
    assert archive.registry.get_resources([f"good-{uniq}"]) == {}
    assert archive.cfg.find_file(f"good-{uniq}") is None
    assert good.read_bytes() == b"good\n" and clash.read_bytes() == b"other\n"
    assert r.path.read_bytes() == b"first\n"
    assert list(archive.cfg.staging_dir.iterdir()) == []
