"""An archive's odd corners: ``check`` never opens a FIFO or follows a link, a bad
``nbank.json`` is one line naming the field, a locked embedded registry says how
long it waited, ``verify`` of a file named like an id checks that id."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbank_core import deposit, init_archive
from nbank_core.archive import read_config
from nbank_core.cli import main
from nbank_core.errors import ConfigError, IntegrityError, RegistryUnavailable
from nbank_core.registry.sqlite import SqliteRegistry


@pytest.fixture
def stored(tmp_path: Path):
    """An embedded registry, an archive, and two hashed resources in it."""
    db = tmp_path / "r.sqlite"
    url = "sqlite://" + str(db)
    arch = init_archive(tmp_path / "arch", registry=url)
    paths = {}
    with SqliteRegistry(db) as reg:
        reg.add_datatype("txt", "text/plain", "txt")
        for name in ("ff1", "ln1"):
            src = tmp_path / f"{name}.txt"
            src.write_text(f"content of {name}")
            (r,) = deposit(arch.path, [src], dtype="txt", registry=reg, hash=True)
            assert r.ok, r.error
            paths[name] = r.path
    return db, url, arch, paths


# -- 6. check never opens or follows what is not a file -----------------------------
def test_check_reports_a_fifo_and_a_link_and_opens_neither(stored) -> None:
    db, url, arch, paths = stored
    for path in paths.values():
        path.chmod(0o644)
        path.unlink()
    os.mkfifo(paths["ff1"])
    os.symlink("/dev/zero", paths["ln1"])
    code = textwrap.dedent(f"""\
        import json
        from nbank_core.check import check_archive
        found = check_archive({str(arch.path)!r}, fix=True)
        print(json.dumps([f.as_dict() for f in found]))
        """)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail("check opened a FIFO or read /dev/zero: it hung")
    assert out.returncode == 0, out.stderr
    found = {
        (f["kind"], f["id"]): f
        for f in json.loads(out.stdout)
        if f["path"] is None or "/resources/" in f["path"]
    }
    assert set(found) == {("not-a-file", "ff1"), ("not-a-file", "ln1")}
    assert "FIFO" in found["not-a-file", "ff1"]["detail"]
    assert "/dev/zero" in found["not-a-file", "ln1"]["detail"]
    assert not any(f["fixed"] for f in found.values())
    with SqliteRegistry(db) as reg:  # --fix withdrew nothing
        assert reg.get_resource("ff1") and reg.get_resource("ln1")


def test_check_does_not_follow_a_linked_shard(stored, tmp_path: Path) -> None:
    db, url, arch, paths = stored
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "zz1.txt")
    os.symlink(outside, arch.resources_dir / "zz")
    code = (
        "from nbank_core.check import check_archive;"
        f"print([(f.kind, f.path) for f in check_archive({str(arch.path)!r})])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert f"('not-a-file', '{arch.resources_dir / 'zz'}')" in out.stdout


# -- 7. a locked embedded registry ------------------------------------------------
def test_a_locked_registry_says_who_and_how_long(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    with SqliteRegistry(db) as reg:
        reg.add_datatype("txt", "text/plain")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with SqliteRegistry(db, timeout=0.3) as reg:
            with pytest.raises(RegistryUnavailable) as info:
                reg.add_datatype("csv", "text/csv")
    finally:
        holder.close()
    message = str(info.value)
    assert "another process holds the registry" in message
    waited = float(message.split("waited ")[1].split(" s")[0])
    assert 0.25 <= waited < 5 and "the limit is 0.3 s" in message


# -- 8. a bad nbank.json is one line naming the field --------------------------------
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("group", 12345, "policy.access.group must be a group name (a string)"),
        ("group", ["staff"], "policy.access.group must be a group name"),
        ("group", "no-such-group-x9", "is not a group on this host"),
        ("user", 0, "policy.access.user must be a user name"),
        ("user", "no-such-user-x9", "is not a user on this host"),
        ("umask", -1, "policy.access.umask must be a umask from 0 to 0o777"),
        ("umask", 777, 'for the octal 777, write the decimal 511 or the string "777"'),
        ("umask", 0o1000, "must be a umask"),
        ("umask", True, "must be a umask"),
        ("umask", 2.5, "must be a umask"),
        ("umask", [2], "must be a umask"),
        ("umask", "rwx", "must be a umask"),
        ("umask", "1000", "must be a umask"),
        ("read_only_resources", "yes", "read_only_resources must be true or false"),
    ],
)
def test_a_bad_access_policy_is_one_line(tmp_path: Path, field, value, expected):
    arch = init_archive(tmp_path / "a", registry="sqlite://" + str(tmp_path / "r"))
    doc = json.loads((arch.path / "nbank.json").read_text())
    doc["policy"]["access"][field] = value
    (arch.path / "nbank.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        read_config(arch.path)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert message.startswith(f"{arch.path / 'nbank.json'}: ")


@pytest.mark.parametrize(
    ("umask", "expected"), [(2, 0o002), (18, 0o022), (511, 0o777), ("777", 0o777)]
)
def test_a_good_umask_is_read(tmp_path: Path, umask, expected) -> None:
    arch = init_archive(tmp_path / "a", registry="sqlite://" + str(tmp_path / "r"))
    doc = json.loads((arch.path / "nbank.json").read_text())
    doc["policy"]["access"].update(umask=umask, user=None)
    (arch.path / "nbank.json").write_text(json.dumps(doc))
    assert read_config(arch.path).umask == expected


def test_a_bad_nbank_json_stops_a_deposit_before_anything_is_staged(
    stored, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, url, arch, paths = stored
    doc = json.loads((arch.path / "nbank.json").read_text())
    doc["policy"]["access"]["group"] = 12345
    (arch.path / "nbank.json").write_text(json.dumps(doc))
    src = tmp_path / "nw1.txt"
    src.write_text("new")
    staged = sorted(arch.staging_dir.iterdir())
    assert main(["deposit", str(arch.path), "-d", "txt", str(src)]) == 1
    err = capsys.readouterr().err
    assert "policy.access.group must be a group name" in err
    assert len(err.splitlines()) == 1
    assert src.exists() and sorted(arch.staging_dir.iterdir()) == staged
    assert not list(arch.resources_dir.glob("nw/*"))


# -- 9. verify of a file named like an id ------------------------------------------
def test_verify_checks_a_file_against_the_id_it_is_named_like(
    stored, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, url, arch, paths = stored
    impostor = tmp_path / "check" / "ff1.txt"
    impostor.parent.mkdir()
    impostor.write_text("content of ln1")  # the bytes of another resource
    assert main(["-r", url, "verify", str(impostor)]) == 1
    out, err = capsys.readouterr()
    assert "FAILED" in out + err and "ff1" in out + err

    other = tmp_path / "check" / "ff1"  # no extension: still named like ff1
    other.write_text("nobody's content")
    assert main(["-r", url, "verify", str(other)]) == 1
    assert "FAILED" in "".join(capsys.readouterr())

    good = tmp_path / "check" / "ln1.txt"
    good.write_text("content of ln1")
    renamed = tmp_path / "check" / "copy.txt"
    renamed.write_text("content of ff1")
    assert main(["-r", url, "verify", str(good), str(renamed)]) == 0
    out = capsys.readouterr().out
    assert "ln1" in out and "ff1" in out and "FAILED" not in out


def test_verify_api_raises_integrity_error(stored, tmp_path: Path) -> None:
    from nbank_core.api import verify

    db, url, arch, paths = stored
    impostor = tmp_path / "ff1.dat"
    impostor.write_text("content of ln1")
    with pytest.raises(IntegrityError, match="named like the resource 'ff1'") as info:
        verify(impostor, registry=url)
    with SqliteRegistry(db) as reg:
        expected = reg.get_resource("ff1")["sha1"]
        found = reg.get_resource("ln1")["sha1"]
    message = str(info.value)
    assert expected in message and found in message and "'ln1'" in message
