"""Access: files and directories follow the archive's group, umask and read-only
policy; credentials never show in output, errors or process titles."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import start_tiny_server

from nbank_core import Settings, deposit, init_archive
from nbank_core.registry import open_registry

NBANK = str(Path(sys.executable).with_name("nbank"))
SECRET = "s3cret-Pa55word"


def _group() -> str:
    """A group this process is not primarily in, so chown has an effect."""
    for name in ("users", "staff", "nogroup"):
        try:
            if grp.getgrnam(name).gr_gid != os.getgid():
                return name
        except KeyError:
            continue
    pytest.skip("no second group on this host")


def test_files_and_directories_follow_the_policy(tmp_path):
    group = _group()
    gid = grp.getgrnam(group).gr_gid
    url = "sqlite://" + str(tmp_path / "r.sqlite")
    arch = init_archive(
        tmp_path / "a", registry=url, group=group, umask=0o027, allow_directories=True
    )
    with open_registry(url, create=True) as reg:
        reg.add_datatype("txt", "text/plain")
    f = tmp_path / "file1.txt"
    f.write_text("one")
    d = tmp_path / "dir1"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "x.txt").write_text("x")
    results = deposit(arch.path, [f, d], dtype="txt")
    assert all(r.ok for r in results), [r.error for r in results]
    for top in (arch.path / "resources", arch.path / "staging", arch.shard_dir("fi")):
        st = top.stat()
        assert st.st_gid == gid and st.st_mode & stat.S_ISGID, top
        assert stat.S_IMODE(st.st_mode) & 0o7777 == 0o2750, oct(st.st_mode)
    file_st = results[0].path.stat()
    assert (stat.S_IMODE(file_st.st_mode), file_st.st_gid) == (0o440, gid)
    for p in [results[1].path, *results[1].path.rglob("*")]:
        st = p.stat()
        want = 0o550 if p.is_dir() else 0o440
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (want, gid), p
    for name in ("nbank.json", "README.md", ".gitignore"):
        st = (arch.path / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, gid)


def test_read_only_holds_for_an_unprivileged_user(tmp_path):
    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None:
        pytest.skip("needs root and runuser to act as an unprivileged user")
    url = "sqlite://" + str(tmp_path / "r.sqlite")
    arch = init_archive(tmp_path / "a", registry=url, umask=0o022)
    with open_registry(url, create=True) as reg:
        reg.add_datatype("txt", "text/plain")
    src = tmp_path / "ro.txt"
    src.write_text("keep me")
    (r,) = deposit(arch.path, [src], dtype="txt")
    os.chmod(tmp_path, 0o755)
    write = f"open({str(r.path)!r}, 'a').write('x')"
    proc = subprocess.run(
        [runuser, "-u", "nobody", "--", sys.executable, "-c", write],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Permission denied" in proc.stderr
    assert r.path.read_text() == "keep me"


@pytest.mark.slow
def test_credentials_never_show(django_registry, tmp_path, monkeypatch):
    user = django_registry.username
    # a wrong password in -a: the error names the user, never the password
    proc = subprocess.run(
        [
            NBANK,
            "-r",
            django_registry.url,
            "-a",
            f"{user}:{SECRET}",
            "dtype",
            "add",
            "x-y",
            "a/b",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and SECRET not in proc.stdout + proc.stderr
    assert user in proc.stderr
    # the same from ~/.netrc
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {user} password {SECRET}\n")
    netrc.chmod(0o600)
    proc = subprocess.run(
        [NBANK, "-r", django_registry.url, "dtype", "add", "x-z", "a/b"],
        env={**os.environ, "NETRC": str(netrc)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and SECRET not in proc.stdout + proc.stderr
    # nor in the repr of settings and registries
    settings = Settings.from_env(registry=django_registry.url, auth=f"{user}:{SECRET}")
    with settings.open() as reg:
        assert SECRET not in repr(settings) + repr(reg) + str(reg.__dict__.keys())


@pytest.mark.slow
def test_the_process_title_hides_the_password(tmp_path):
    def slow(method, path, n):
        time.sleep(3)
        return (
            200,
            "application/json",
            b'{"name": "x", "version": "1", "api_version": "1.2"}',
        )

    with start_tiny_server(slow) as server:
        proc = subprocess.Popen(
            [NBANK, "-r", server.url, "-a", f"someone:{SECRET}", "registry-info"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 10
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.requests, "the command never reached the server"
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert SECRET.encode() not in cmdline
            assert b"someone:***" in cmdline
        finally:
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and SECRET.encode() not in out + err
