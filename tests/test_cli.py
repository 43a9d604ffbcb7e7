"""The ``nbank`` command as a user runs it, on both registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NBANK = str(Path(sys.executable).with_name("nbank"))


def run(args, *, env=None, cwd=None, input=None, check=True):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [NBANK, *args],
        env=full_env,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def cli_env(backend, tmp_path):
    """Environment for one test: the backend's registry, a private NBANK_HOME."""
    return {**backend.env, "NBANK_HOME": str(tmp_path / "home")}


@pytest.mark.slow
def test_the_readme_session(backend, cli_env, tmp_path, uniq):
    arch = tmp_path / "my-archive"
    run(["init", str(arch), "-n", f"my-archive-{uniq}"], env=cli_env)
    dtype = f"wav-stimulus-{uniq}"
    run(["dtype", "add", dtype, "audio/wav"], env=cli_env)
    assert dtype in run(["dtype", "list"], env=cli_env).stdout.split()
    names = [f"st{uniq}_1", f"st{uniq}_2"]
    for i, n in enumerate(names):
        (tmp_path / f"{n}.wav").write_bytes(b"RIFF%d" % i)
    out = run(
        [
            "deposit",
            "-J",
            "-d",
            dtype,
            "-k",
            "site=3",
            str(arch),
            *(f"{n}.wav" for n in names),
        ],
        env=cli_env,
        cwd=tmp_path,
    ).stdout
    assert [json.loads(line)["id"] for line in out.splitlines()] == names
    located = run(["locate", "--path-only", names[0]], env=cli_env).stdout.strip()
    assert located == str(arch.resolve() / "resources" / "st" / f"{names[0]}.wav")
    assert Path(located).read_bytes() == b"RIFF0"
    info = json.loads(run(["info", names[0]], env=cli_env).stdout)
    assert info["metadata"]["site"] == 3 and info["dtype"] == dtype
    found = run(["search", "-d", dtype], env=cli_env).stdout.split()
    assert found == names
    copy = tmp_path / "some-file.wav"
    copy.write_bytes(b"RIFF1")
    assert run(["verify", str(copy)], env=cli_env).stdout == (
        f"{copy}: matches registry resource {names[1]}\n"
    )
    archives = run(["archive", "list"], env=cli_env).stdout
    assert f"my-archive-{uniq}" in archives
    assert "version" in json.loads(run(["registry-info", "-j"], env=cli_env).stdout)


@pytest.mark.slow
def test_full_identifier_urls_are_accepted(django_registry, tmp_path, uniq):
    env = {
        "NBANK_REGISTRY": django_registry.url,
        "NBANK_AUTH": ":".join(django_registry.auth),
    }
    arch = tmp_path / "a"
    run(["init", str(arch), "-n", f"u{uniq}"], env=env)
    run(["dtype", "add", f"t{uniq}", "text/plain"], env=env)
    (tmp_path / f"r{uniq}.txt").write_text("x")
    run(
        ["deposit", "-d", f"t{uniq}", str(arch), str(tmp_path / f"r{uniq}.txt")],
        env=env,
    )
    url = f"{django_registry.url}resources/r{uniq}/"
    # no registry in the environment: the URL names its own
    out = run(["locate", url], env={"NBANK_HOME": str(tmp_path / "h")}).stdout
    assert out.strip().endswith(f"r{uniq}.txt")


@pytest.mark.slow
def test_user_errors_are_one_line_and_exit_1(cli_env, backend, tmp_path):
    cases = [
        ["locate", "nosuchid"],
        ["info", "nosuchid"],
        ["locate", "../etc/passwd"],
        ["deposit", "-d", "x", str(tmp_path / "not-an-archive"), "f.txt"],
        ["verify", str(tmp_path / "missing.wav")],
    ]
    for args in cases:
        proc = run(args, env=cli_env, check=False)
        assert proc.returncode == 1, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert proc.stderr.startswith("nbank: ")


def test_usage_errors_exit_2(cli_env):
    for args in (
        ["deposit", "-d", "x", "arch", "f", "-k", "nokey"],
        ["frobnicate"],
        [],
    ):
        proc = run(args, env=cli_env, check=False)
        assert proc.returncode == 2, (args, proc.stderr)


@pytest.mark.slow
def test_registry_down_is_one_clear_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"NBANK_REGISTRY": f"http://127.0.0.1:{port}/neurobank/"}
    proc = run(["info", "abc"], env=env, check=False)
    assert proc.returncode == 1
    assert "cannot reach the registry" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_closed_pipe_is_not_an_error(cli_env, archive, tmp_path, uniq):
    names = [f"p{uniq}_{i:03d}" for i in range(300)]
    for n in names:
        (tmp_path / f"{n}.txt").write_text(n)
    env = {**cli_env, "NBANK_REGISTRY": archive.backend.url}
    run(
        [
            "deposit",
            "-d",
            archive.dtype,
            str(archive.path),
            *(str(tmp_path / f"{n}.txt") for n in names),
        ],
        env=env,
    )
    proc = subprocess.run(
        f"'{NBANK}' search p{uniq} | head -1",
        shell=True,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == names[0]
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr


def test_deposit_reports_each_failure_and_exits_1(cli_env, archive, tmp_path, uniq):
    ok = tmp_path / f"ok{uniq}.txt"
    ok.write_text("ok")
    proc = run(
        [
            "deposit",
            "-J",
            "-d",
            archive.dtype,
            str(archive.path),
            str(ok),
            str(tmp_path / "missing.txt"),
        ],
        env={**cli_env, "NBANK_REGISTRY": archive.backend.url},
        check=False,
    )
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [x["status"] for x in lines] == ["deposited", "failed"]
    assert "missing.txt" in proc.stderr and "1 of 2 files" in proc.stderr


def test_version_starts_fast_enough_to_call_often():
    proc = run(["--version"])
    assert proc.stdout.startswith("nbank ")
    # importing the CLI must not pull in the HTTP stack or the deposit machinery
    code = "import sys, nbank_core.cli; print(sorted(m for m in ('requests', 'sqlite3', 'nbank_core.transaction') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_options_may_come_between_the_archive_and_the_files(archive, tmp_path, uniq):
    files = [tmp_path / f"mix{uniq}_{i}.txt" for i in range(2)]
    for f in files:
        f.write_text(f.name)
    out = run(
        ["deposit", str(archive.path), "-d", archive.dtype, "-j", *map(str, files)],
        env=archive.backend.env,
    ).stdout
    assert [json.loads(line)["id"] for line in out.splitlines()] == [
        f.stem for f in files
    ]
    assert (
        run(
            ["deposit", str(archive.path), "-d", archive.dtype, "--bogus", "x"],
            env=archive.backend.env,
            check=False,
        ).returncode
        == 2
    )
