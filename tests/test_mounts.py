"""Archives mounted at another path than the root the registry knows: the per-user
mounts file, ``NBANK_MOUNTS``, and locate, deposit and check through them, on both
registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbank_core import deposit
from nbank_core.archive import read_config
from nbank_core.check import check_archive
from nbank_core.errors import ConfigError, NotFound
from nbank_core.mounts import (
    ENV_MOUNTS,
    add_mount,
    list_mounts,
    mounts_file,
    parse_env,
    registered_archive,
    remove_mount,
)
from nbank_core.resolve import Resolver

NBANK = str(Path(sys.executable).with_name("nbank"))


@pytest.fixture(autouse=True)
def private_home(monkeypatch, tmp_path):
    """Each test has its own mounts file and no NBANK_MOUNTS."""
    monkeypatch.setenv("NBANK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_MOUNTS, raising=False)


def test_the_mounts_file_is_written_atomically_and_read_back(tmp_path):
    arch = tmp_path / "arch"
    from nbank_core.archive import create_archive

    create_archive(arch, "sqlite:///tmp/none.sqlite")
    assert list_mounts() == {}
    assert add_mount("lab", arch) == arch.resolve()
    assert mounts_file() == tmp_path / "home" / "mounts.json"
    doc = json.loads(mounts_file().read_text())
    assert doc == {"mounts": {"lab": str(arch.resolve())}}
    assert not [p for p in mounts_file().parent.iterdir() if p.name.startswith(".")]
    assert list_mounts() == {"lab": arch.resolve()}
    # the environment wins over the file, entry by entry
    env = {ENV_MOUNTS: "lab=/srv/lab:other=/srv/other"}
    assert list_mounts(environ=env) == {
        "lab": Path("/srv/lab"),
        "other": Path("/srv/other"),
    }
    assert remove_mount("lab") == arch.resolve()
    assert list_mounts() == {}
    with pytest.raises(NotFound, match="no mount of archive 'lab'"):
        remove_mount("lab")


def test_bad_mounts_are_refused_with_what_to_write(tmp_path):
    with pytest.raises(ConfigError, match="NAME=/absolute/path"):
        parse_env("lab=relative/path")
    with pytest.raises(ConfigError, match="NAME=/absolute/path"):
        parse_env("no-equals-sign")
    assert parse_env("::") == {}
    with pytest.raises(NotFound, match="not a neurobank archive"):
        add_mount("lab", tmp_path)
    with pytest.raises(ConfigError, match="archive name"):
        add_mount("bad/name", tmp_path)
    mounts_file().parent.mkdir(parents=True)
    mounts_file().write_text("[1, 2]")
    with pytest.raises(ConfigError, match="is not a mounts file"):
        list_mounts()


def _moved(archive, tmp_path: Path) -> Path:
    """Deposits one file, then moves the archive so that its registered root is
    gone; returns the new place."""
    src = tmp_path / f"m{archive.dtype[4:]}.txt"
    src.write_text(f"mounted elsewhere {archive.dtype}")
    [res] = deposit(archive.path, [src], dtype=archive.dtype, registry=archive.registry)
    assert res.ok, res.error
    elsewhere = tmp_path / "Volumes" / "archive"
    elsewhere.parent.mkdir()
    os.rename(archive.path, elsewhere)
    return elsewhere


def test_locate_deposit_and_check_go_through_a_mount(archive, tmp_path, monkeypatch):
    reg = archive.registry
    ident = f"m{archive.dtype[4:]}"
    name = reg.find_archive_by_root(str(archive.path))["name"]
    elsewhere = _moved(archive, tmp_path)
    cfg = read_config(elsewhere)
    # without a mount: registered, but not on this host; not this archive
    with pytest.raises(NotFound, match="nbank archive mount NAME PATH"):
        Resolver(reg).path(ident)
    assert registered_archive(reg, cfg) is None
    src = tmp_path / f"n{archive.dtype[4:]}.txt"
    src.write_text(f"a second file {archive.dtype}")
    with pytest.raises(NotFound, match="is not registered"):
        deposit(elsewhere, [src], dtype=archive.dtype, registry=reg)

    add_mount(name, elsewhere)
    assert Resolver(reg).path(ident) == elsewhere / "resources" / ident[:2] / (
        ident + ".txt"
    )
    assert registered_archive(reg, cfg)["name"] == name
    [res] = deposit(elsewhere, [src], dtype=archive.dtype, registry=reg)
    assert res.ok, res.error
    assert res.path.parent.parent.parent == elsewhere
    assert Resolver(reg).path(res.id) == res.path
    assert check_archive(cfg, registry=reg) == []
    # the record still names the registered root
    assert reg.get_archive(name)["root"] == str(archive.path)


def test_the_environment_variable_serves_cluster_jobs(archive, tmp_path, monkeypatch):
    reg = archive.registry
    ident = f"m{archive.dtype[4:]}"
    name = reg.find_archive_by_root(str(archive.path))["name"]
    elsewhere = _moved(archive, tmp_path)
    monkeypatch.setenv(ENV_MOUNTS, f"other=/nonexistent:{name}={elsewhere}")
    assert Resolver(reg).path(ident).read_text().startswith("mounted elsewhere")
    assert check_archive(read_config(elsewhere), registry=reg) == []


def _nbank(args, env, check=True):
    proc = subprocess.run(
        [NBANK, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_the_mount_commands(archive, tmp_path):
    reg = archive.registry
    ident = f"m{archive.dtype[4:]}"
    name = reg.find_archive_by_root(str(archive.path))["name"]
    elsewhere = _moved(archive, tmp_path)
    env = {**archive.backend.env, "NBANK_HOME": str(tmp_path / "home")}
    missing = _nbank(["locate", ident], env, check=False)
    assert missing.returncode == 1
    out = _nbank(["archive", "mount", name, str(elsewhere)], env)
    assert out.stdout.strip() == f"{name}\t{elsewhere}"
    listed = _nbank(["archive", "mounts"], env).stdout
    assert f"{name}\t{elsewhere}" in listed.splitlines()
    located = _nbank(["locate", ident], env).stdout
    assert str(elsewhere) in located
    check = _nbank(["check", str(elsewhere)], env)
    assert check.returncode == 0
    # an archive name the registry does not know is refused
    bad = _nbank(["archive", "mount", "nosuch-archive", str(elsewhere)], env, False)
    assert bad.returncode == 1 and "nosuch-archive" in bad.stderr
    _nbank(["archive", "unmount", name], env)
    assert _nbank(["archive", "mounts"], env).stdout.strip() == ""
    assert _nbank(["locate", ident], env, check=False).returncode == 1
