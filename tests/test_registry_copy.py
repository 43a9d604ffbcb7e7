"""Growing from the embedded registry to a server: ``registry copy`` both ways,
idempotent, conflicts left alone, ``--relink``; the existing client 0.13.0 finds
and checks every file through the copy; the warning for a registry file on a
network filesystem."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from servers import start_django_registry

from nbank_core import copy_registry, deposit, init_archive
from nbank_core.errors import ConfigError
from nbank_core.netfs import filesystem_type, is_network_filesystem
from nbank_core.registry import open_registry
from nbank_core.registry.http import HttpRegistry
from nbank_core.registry.sqlite import SqliteRegistry

ROOT = Path(__file__).resolve().parent.parent
NBANK = str(Path(sys.executable).with_name("nbank"))


def _nbank(args, env=None, check=True):
    proc = subprocess.run(
        [NBANK, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _lab(tmp_path: Path, uniq: str) -> tuple[str, Path, list[str]]:
    """An embedded registry with one archive, a datatype and three deposits (one
    with metadata, one with provenance); returns (url, archive, ids)."""
    url = "sqlite://" + str(tmp_path / "lab.sqlite")
    arch = init_archive(tmp_path / "lab-archive", registry=url, name=f"lab{uniq}")
    with open_registry(url) as reg:
        reg.add_datatype(f"txt{uniq}", "text/plain", "txt")
        names = [f"r{uniq}_{i}" for i in range(3)]
        for i, n in enumerate(names):
            (tmp_path / f"{n}.txt").write_text(f"file {i} of {uniq}")
        meta = [{"site": 3}, {"engine": "luigi", "inputs": [names[0]]}, None]
        for n, m in zip(names, meta, strict=True):
            [r] = deposit(
                arch.path,
                [tmp_path / f"{n}.txt"],
                dtype=f"txt{uniq}",
                metadata=m,
                registry=reg,
            )
            assert r.ok, r.error
    return url, arch.path, names


def _records(reg, names):
    found = reg.get_resources(names)
    return {
        n: (r["sha1"], r["dtype"], r["metadata"], sorted(r["locations"]))
        for n, r in found.items()
    }


def test_copy_into_either_registry_is_idempotent_and_leaves_conflicts(
    backend, registry, tmp_path, uniq
):
    src, arch, names = _lab(tmp_path, uniq)
    # the destination already has one of the names with other content
    registry.add_datatype(f"txt{uniq}", "text/plain", "txt")
    registry.add_archive(f"x{uniq}", str(tmp_path / "elsewhere"))
    registry.add_resource(
        names[2], f"txt{uniq}", f"x{uniq}", sha1="0" * 40, metadata={"mine": 1}
    )
    report = copy_registry(src, registry)
    assert (report.datatypes, report.archives, report.resources) == (0, 1, 2)
    assert len(report.conflicts) == 1 and names[2] in report.conflicts[0]
    assert "other content" in report.conflicts[0]
    with open_registry(src) as s:
        assert _records(registry, names[:2]) == _records(s, names[:2])
    kept = registry.get_resource(names[2])
    assert kept["sha1"] == "0" * 40 and kept["metadata"] == {"mine": 1}
    again = copy_registry(src, registry)
    assert again.copied == 0 and again.unchanged == 2
    assert len(again.conflicts) == 1
    # the command: a conflict exits 1, says what and leaves it alone
    env = backend.env
    proc = _nbank(["registry", "copy", src, backend.url], env, check=False)
    assert proc.returncode == 1
    assert "nothing to copy" in proc.stderr and names[2] in proc.stderr
    with pytest.raises(ConfigError, match="same registry"):
        copy_registry(src, src)


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    """A django-neurobank of its own, empty, so a copy from it copies only what
    the test put there."""
    with start_django_registry(
        tmp_path_factory.mktemp("copy-server"), page_size=50
    ) as server:
        yield server


def _compat_client() -> str:
    path = os.environ.get("NBANK_COMPAT_CLIENT") or str(ROOT / ".venv-compat/bin/nbank")
    if not Path(path).is_file():
        pytest.skip("the neurobank 0.13.0 client is not installed (.venv-compat)")
    return path


@pytest.mark.slow
def test_embedded_to_server_and_back_and_the_old_client_uses_the_copy(
    fresh_server, tmp_path, uniq, monkeypatch
):
    monkeypatch.setenv("NBANK_HOME", str(tmp_path / "home"))
    src, arch, names = _lab(tmp_path, uniq)
    mode = stat.S_IMODE(os.stat(arch / "nbank.json").st_mode)
    url, auth = fresh_server.url, fresh_server.auth
    env = {"NBANK_AUTH": ":".join(auth), "NBANK_HOME": str(tmp_path / "home")}
    out = _nbank(["registry", "copy", src, url, "--relink"], env)
    assert out.stdout.split() == ["relinked", str(arch)]
    assert "1 datatype(s), 1 archive(s), 3 resource(s)" in out.stderr
    doc = json.loads((arch / "nbank.json").read_text())
    assert doc["registry"] == url
    assert stat.S_IMODE(os.stat(arch / "nbank.json").st_mode) == mode
    assert not [p for p in arch.iterdir() if p.name.startswith(".nbank.json")]
    again = _nbank(["registry", "copy", src, url, "--relink"], env)
    assert again.stdout == "" and "nothing to copy" in again.stderr

    # the existing client, pointed at the copy, finds and checks every file
    theirs = _compat_client()
    g = ["-r", url, "-a", ":".join(auth)]
    for n in names:
        located = subprocess.run(
            [theirs, *g, "locate", n], capture_output=True, text=True, timeout=120
        )
        assert located.returncode == 0, located.stderr
        path = Path(located.stdout.split("\t")[-1].strip())
        assert path.parent.parent.parent == arch and path.is_file()
    check = subprocess.run(
        [theirs, *g, "check", "archive", str(arch)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # ours deposits into the relinked archive: it goes to the server
    (tmp_path / f"after{uniq}.txt").write_text(f"after the move {uniq}")
    _nbank(
        ["deposit", "-d", f"txt{uniq}", str(arch), str(tmp_path / f"after{uniq}.txt")],
        env,
    )
    with HttpRegistry(url, auth=auth) as server:
        assert server.get_resource(f"after{uniq}")["locations"] == [f"lab{uniq}"]
        # and back: the server into a new embedded registry
        back = "sqlite://" + str(tmp_path / "back.sqlite")
        report = copy_registry(server, back)
        assert report.resources == 4 and not report.conflicts
        with SqliteRegistry(tmp_path / "back.sqlite") as b, open_registry(src) as s:
            assert _records(b, names) == _records(s, names)
            assert b.get_archive(f"lab{uniq}")["root"] == str(arch)
        assert copy_registry(server, back).copied == 0


# -- the embedded registry on a network filesystem --------------------------------
TABLE = """\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 22 0:40 / /home/lab rw - nfs4 fs:/export/lab rw,vers=4.2
41 40 8:2 / /home/lab/local rw - ext4 /dev/sdb1 rw
42 22 0:41 / /mnt/smb\\040share rw - cifs //fs/share rw
43 22 0:42 / /mnt/remote rw - fuse.sshfs me@host:/data rw
"""
MOUNTS = "fs:/export /net nfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"


def test_network_filesystems_are_recognised_from_the_mount_table():
    cases = {
        "/home/lab/registry.sqlite": "nfs4",
        "/home/lab/local/registry.sqlite": "ext4",
        "/home/labmate/registry.sqlite": "ext4",
        "/mnt/smb share/r.sqlite": "cifs",
        "/mnt/remote/deeper/not/yet/made.sqlite": "fuse.sshfs",
        "/tmp/r.sqlite": "ext4",
    }
    for path, kind in cases.items():
        assert filesystem_type(path, mountinfo=TABLE) == kind, path
        assert is_network_filesystem(path, mountinfo=TABLE) == (kind != "ext4")
    assert filesystem_type("/net/x.sqlite", mountinfo=MOUNTS) == "nfs"
    assert filesystem_type("/x", mountinfo="") is None


def test_an_embedded_registry_on_nfs_warns_once(tmp_path, monkeypatch, caplog):
    from nbank_core import netfs

    table = f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 22 0:40 / {tmp_path} rw - nfs fs:/x rw\n"
    monkeypatch.setattr(netfs, "_table", lambda: table)
    monkeypatch.setattr(netfs, "_warned", set())
    caplog.set_level(logging.WARNING, logger="nbank_core")
    for _ in range(2):
        with SqliteRegistry(tmp_path / "r.sqlite") as reg:
            reg.list_datatypes()
    warned = [
        r.getMessage() for r in caplog.records if "network filesystem" in r.getMessage()
    ]
    assert len(warned) == 1
    assert "(nfs)" in warned[0] and "nbank registry copy" in warned[0]
    assert str(tmp_path / "r.sqlite") in warned[0]
    caplog.clear()
    with SqliteRegistry(tmp_path.parent / "elsewhere.sqlite") as reg:
        reg.list_datatypes()
    assert not caplog.records


def test_the_command_shows_the_warning(tmp_path, monkeypatch, capsys):
    from nbank_core import netfs
    from nbank_core.cli import main

    table = f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 22 0:40 / {tmp_path} rw - cifs //fs/x rw\n"
    monkeypatch.setattr(netfs, "_table", lambda: table)
    monkeypatch.setattr(netfs, "_warned", set())
    url = "sqlite://" + str(tmp_path / "reg.sqlite")
    logger = logging.getLogger("nbank_core")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))  # main adds one
    monkeypatch.setattr(logger, "level", logger.level)
    assert main(["-r", url, "registry", "init"]) == 0
    err = capsys.readouterr().err
    assert err.count("network filesystem (cifs)") == 1
    assert "nbank registry copy" in err
