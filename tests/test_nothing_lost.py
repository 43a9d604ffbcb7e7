"""Nothing lost, nobody in: interrupted deposits, directories stranded in staging,
archive roots that differ in case, sources inside an archive, writes whose answer
was lost, wrong passwords, long ids and moved archives, each run as a user runs
it (the ``nbank`` command or the API) on both registries where it applies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Archive, Backend
from crash_helpers import nbank, parse_json_lines
from servers import Seen, recording_proxy

from nbank_core import DepositItem, deposit, init_archive, sha1_file
from nbank_core.errors import RegistryUnavailable
from nbank_core.registry import Registry
from nbank_core.registry.http import HttpRegistry
from nbank_core.registry.sqlite import SqliteRegistry


def env_of(backend: Backend, tmp_path: Path) -> dict[str, str]:
    return {**backend.env, "NBANK_HOME": str(tmp_path / "home")}


def staging_entries(path: Path) -> list[str]:
    """Everything under an archive's staging/, journals included."""
    staging = path / "staging"
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))


def resources(path: Path) -> list[Path]:
    return sorted(p for p in (path / "resources").glob("*/*"))


def tree(path: Path) -> dict[str, bytes | None]:
    """A directory's content: relative path -> bytes (None for a directory)."""
    return {
        str(p.relative_to(path)): None if p.is_dir() else p.read_bytes()
        for p in sorted(path.rglob("*"))
    }


def name_of(archive: Archive) -> str:
    found = archive.registry.find_archive_by_root(str(archive.path))
    assert found is not None
    return found["name"]


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# -- item 8: sources inside an archive ---------------------------------------------
@pytest.mark.slow
def test_the_archive_own_files_are_never_deposited(
    archive: Archive, tmp_path: Path, uniq: str
) -> None:
    """Depositing the archive's ``nbank.json``, or ``deposit -A`` of an archived
    file, is refused with one line and changes nothing."""
    env = env_of(archive.backend, tmp_path)
    config = archive.path / "nbank.json"
    before = config.read_bytes()
    run = nbank(["deposit", "-d", archive.dtype, str(archive.path), str(config)], env)
    assert run.returncode == 1 and run.tracebacks == 0
    assert len(lines(run.stderr)) == 1 and "inside the archive" in run.stderr
    assert config.read_bytes() == before
    assert resources(archive.path) == [] and staging_entries(archive.path) == []

    src = tmp_path / f"in{uniq}.txt"
    src.write_text("archived once")
    ok = nbank(["deposit", "-d", archive.dtype, str(archive.path), str(src)], env)
    assert ok.returncode == 0, ok.stderr
    [archived] = resources(archive.path)
    content = archived.read_bytes()
    again = nbank(
        ["deposit", "-A", "-d", archive.dtype, str(archive.path), str(archived)], env
    )
    assert again.returncode == 1 and again.tracebacks == 0
    assert len(lines(again.stderr)) == 1 and "inside the archive" in again.stderr
    assert resources(archive.path) == [archived] and archived.read_bytes() == content
    names = [r["name"] for r in archive.registry.search(archive=name_of(archive))]
    assert names == [src.stem]
    check = nbank(["check", str(archive.path)], env)
    assert check.returncode == 0 and check.stdout == "", check.stdout + check.stderr


# -- item 14: ids of 239-255 characters ----------------------------------------------
def test_a_240_character_id_is_deposited(
    archive: Archive, tmp_path: Path, uniq: str
) -> None:
    """``<240-char id>.txt`` is staged under a name that fits and archived."""
    ident = "L" * 230 + uniq
    src = tmp_path / f"{ident}.txt"
    src.write_text("a long name")
    env = env_of(archive.backend, tmp_path)
    run = nbank(["deposit", "-d", archive.dtype, str(archive.path), str(src)], env)
    assert run.returncode == 0 and run.tracebacks == 0, run.stderr
    assert resources(archive.path) == [archive.cfg.resource_path(ident, ".txt")]
    assert not src.exists() and staging_entries(archive.path) == []
    assert archive.registry.get_resource(ident)["name"] == ident


def test_an_id_too_long_for_a_file_name_is_refused_before_staging(
    archive: Archive, tmp_path: Path, uniq: str
) -> None:
    """An id plus extension over 255 bytes: one clear error, nothing staged."""
    ident = "L" * 242 + uniq  # 252 characters, 256 bytes with ".txt"
    src = tmp_path / f"long{uniq}.txt"
    src.write_text("too long a name")
    [res] = deposit(
        archive.cfg,
        [DepositItem(src, name=ident)],
        dtype=archive.dtype,
        registry=archive.registry,
    )
    assert res.status == "failed" and res.error is not None
    assert "too long for a file name" in res.error and "256 bytes" in res.error
    assert src.read_text() == "too long a name"
    assert staging_entries(archive.path) == [] and resources(archive.path) == []
    assert archive.registry.get_resources([ident]) == {}


# -- item 15: init over an archive; a moved archive registered again ---------------
@pytest.mark.slow
def test_init_over_an_archive_and_a_moved_archive(
    archive: Archive, tmp_path: Path, uniq: str
) -> None:
    env = env_of(archive.backend, tmp_path)
    config = (archive.path / "nbank.json").read_bytes()
    again = nbank(["init", str(archive.path), "-n", f"again-{uniq}"], env)
    assert again.returncode == 1 and again.tracebacks == 0
    assert len(lines(again.stderr)) == 1, again.stderr
    assert "unexpected error" not in again.stderr
    assert "already exists" in again.stderr and "--register" in again.stderr
    assert (archive.path / "nbank.json").read_bytes() == config

    src = tmp_path / f"mv{uniq}.txt"
    src.write_text("moves with its archive")
    run = nbank(["deposit", "-d", archive.dtype, str(archive.path), str(src)], env)
    assert run.returncode == 0, run.stderr
    moved = tmp_path / "elsewhere" / "archive"
    moved.parent.mkdir()
    os.rename(archive.path, moved)
    lost = nbank(["locate", "--path-only", src.stem], env)
    assert lost.returncode != 0 or str(moved) not in lost.stdout
    reg = nbank(["init", "--register", str(moved), "-n", f"moved-{uniq}"], env)
    assert reg.returncode == 0 and reg.tracebacks == 0, reg.stderr
    assert "1 resource(s) now located there" in reg.stderr
    found = nbank(["locate", "--path-only", src.stem], env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(moved / "resources" / src.stem[:2] / src.name)
    assert (moved / "resources" / src.stem[:2] / src.name).read_text() == (
        "moves with its archive"
    )
    # deposits into the moved archive work under its new registration
    more = tmp_path / f"mv2{uniq}.txt"
    more.write_text("deposited after the move")
    run = nbank(["deposit", "-d", archive.dtype, str(moved), str(more)], env)
    assert run.returncode == 0, run.stderr
    assert archive.registry.get_resource(more.stem)["locations"] == [f"moved-{uniq}"]


# -- item 7: archive roots differing only in case ----------------------------------
@pytest.mark.slow
def test_archive_roots_that_differ_in_case_are_different_archives(
    backend: Backend, registry: Registry, tmp_path: Path, uniq: str
) -> None:
    upper = init_archive(tmp_path / "x" / "Arch", registry=registry, name=f"U{uniq}")
    lower = init_archive(tmp_path / "x" / "arch", registry=registry, name=f"l{uniq}")
    dtype = f"txt-{uniq}"
    registry.add_datatype(dtype, "text/plain")
    env = env_of(backend, tmp_path)
    src = {}
    for cfg, tag in ((upper, "U"), (lower, "l")):
        src[tag] = tmp_path / f"case{tag}{uniq}.txt"
        src[tag].write_text(f"into {cfg.path}")
        run = nbank(["deposit", "-d", dtype, str(cfg.path), str(src[tag])], env)
        assert run.returncode == 0, run.stderr
        record = registry.get_resource(src[tag].stem)
        assert record["locations"] == [f"{tag}{uniq}"]
        assert cfg.find_file(src[tag].stem) is not None
    for cfg, other in ((lower, "U"), (upper, "l")):
        fix = nbank(["check", "--fix", "-j", str(cfg.path)], env)
        assert fix.returncode == 0 and parse_json_lines(fix.stdout) == [], fix.stdout
        assert registry.get_resource(src[other].stem)["locations"] == [f"{other}{uniq}"]
    assert len(resources(upper.path)) == len(resources(lower.path)) == 1


# -- item 9: a write committed although its answer was lost ------------------------
def lossy(backend: Backend) -> Registry:
    """The backend's registry whose ``add_resource`` commits, then loses the
    answer (as a timeout after the server committed would)."""
    base: type[Registry] = SqliteRegistry if backend.kind == "sqlite" else HttpRegistry

    class Lossy(base):  # type: ignore[misc, valid-type]
        def add_resource(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().add_resource(*args, **kwargs)
            raise RegistryUnavailable("no answer within 30 s (read timed out)")

    if backend.kind == "sqlite":
        return Lossy(backend.url.removeprefix("sqlite://"))
    return Lossy(backend.url, auth=backend.auth)


@pytest.mark.parametrize("hashed", [True, False], ids=["sha1", "no-hash"])
def test_a_write_whose_answer_was_lost_is_reconciled(
    backend: Backend, registry: Registry, tmp_path: Path, uniq: str, hashed: bool
) -> None:
    cfg = init_archive(
        tmp_path / "archive", registry=registry, name=f"lost{uniq}", require_hash=hashed
    )
    dtype = f"txt-{uniq}"
    registry.add_datatype(dtype, "text/plain")
    src = tmp_path / f"lost{uniq}.txt"
    src.write_text("committed, answer lost")
    digest = sha1_file(src)
    with lossy(backend) as reg:
        [res] = deposit(cfg, [src], dtype=dtype, registry=reg, metadata={"k": 1})
    assert res.status == "deposited", res.error
    assert res.path == cfg.resource_path(src.stem, ".txt") and not src.exists()
    assert sha1_file(res.path) == digest
    records = list(registry.search(archive=f"lost{uniq}"))
    assert [r["name"] for r in records] == [src.stem]
    assert records[0]["sha1"] == (digest if hashed else None)
    assert staging_entries(cfg.path) == []


# -- item 6: a directory stranded in staging ----------------------------------------
DIE_IN_REGISTRATION = """
import os, signal, sys
from nbank_core.cli import main
from nbank_core.registry.http import HttpRegistry
from nbank_core.registry.sqlite import SqliteRegistry

def die(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

SqliteRegistry.add_resource = HttpRegistry.add_resource = die
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_directory_killed_before_registration_is_put_back(
    backend: Backend, registry: Registry, tmp_path: Path, uniq: str
) -> None:
    """The deposit dies (SIGKILL) after moving the directory into staging and
    before registering it; ``check --fix`` puts it back, byte-identical."""
    cfg = init_archive(
        tmp_path / "archive", registry=registry, name=f"d{uniq}", allow_directories=True
    )
    dtype = f"dir-{uniq}"
    registry.add_datatype(dtype, "application/x-directory")
    src = tmp_path / "data" / f"rec{uniq}"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.dat").write_bytes(os.urandom(5000))
    (src / "sub" / "b.txt").write_text("inside")
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    os.chmod(src / "sub" / "b.txt", 0o640)
    before = tree(src)
    modes = {p: os.lstat(src / p).st_mode for p in before}
    env = {**os.environ, **env_of(backend, tmp_path)}
    died = subprocess.run(
        [sys.executable, "-c", DIE_IN_REGISTRATION, "deposit", "-d", dtype]
        + [str(cfg.path), str(src)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert not src.exists()  # it was in staging when the deposit died
    assert [e for e in staging_entries(cfg.path) if "/" not in e and "~" in e]
    fix = nbank(["check", "--fix", "-j", str(cfg.path)], env_of(backend, tmp_path))
    assert fix.returncode == 0 and fix.tracebacks == 0, fix.stderr
    [finding] = parse_json_lines(fix.stdout)
    assert finding["fixed"] and f"put back at '{src}'" in finding["action"]
    assert tree(src) == before
    assert {p: os.lstat(src / p).st_mode for p in before} == modes
    assert staging_entries(cfg.path) == [] and resources(cfg.path) == []
    assert registry.get_resources([src.name]) == {}
    again = nbank(["check", str(cfg.path)], env_of(backend, tmp_path))
    assert again.returncode == 0 and again.stdout == ""


# -- item 4: a wrong password --------------------------------------------------------
@pytest.fixture
def counting_proxy(django_registry) -> Iterator[tuple[str, list[Seen]]]:  # type: ignore[no-untyped-def]
    """A loopback proxy in front of the session's django-neurobank: its registry
    URL and the requests it forwarded."""
    with recording_proxy(django_registry) as (url, seen):
        yield url, seen


@pytest.mark.slow
def test_a_wrong_password_costs_one_login_and_one_line(
    django_registry, counting_proxy, tmp_path: Path, uniq: str
) -> None:  # type: ignore[no-untyped-def]
    """50 files with a wrong password (``NBANK_AUTH``): one refused login, one
    line naming the refusal and the files not deposited, exit 1, sources intact."""
    url, seen = counting_proxy
    user, _ = django_registry.auth
    with HttpRegistry(url, auth=django_registry.auth) as reg:
        cfg = init_archive(tmp_path / "archive", registry=reg, name=f"pw{uniq}")
        dtype = f"txt-{uniq}"
        reg.add_datatype(dtype, "text/plain")
    sources = []
    for i in range(50):
        src = tmp_path / "src" / f"pw{i:02d}{uniq}.txt"
        src.parent.mkdir(exist_ok=True)
        src.write_text(f"file {i} {uniq}")
        sources.append((src, src.read_bytes()))
    seen.clear()
    env = {"NBANK_HOME": str(tmp_path / "home"), "NBANK_AUTH": f"{user}:wrong{uniq}"}
    started = time.monotonic()
    run = nbank(
        ["deposit", "-d", dtype, str(cfg.path)] + [str(s) for s, _ in sources], env
    )
    took = time.monotonic() - started
    logins = [s for s in seen if s.basic or s.cookie]
    refused = [s for s in logins if s.status in (401, 403)]  # not the probe
    print(
        f"\nwrong password, 50 files: {took:.2f} s, {len(logins)} request(s) "
        f"with credentials, {len(refused)} refused; stderr:\n{run.stderr}"
    )
    assert run.returncode == 1 and run.tracebacks == 0
    assert len(logins) == 1 and len(refused) == 1, seen
    assert lines(run.stderr) == [lines(run.stderr)[0]], run.stderr
    assert run.stderr.startswith("nbank: 50 of 50 file(s) not deposited: ")
    assert "refused" in run.stderr and "(401: " in run.stderr
    assert f"wrong{uniq}" not in run.stderr
    assert all(s.read_bytes() == b for s, b in sources)
    assert staging_entries(cfg.path) == [] and resources(cfg.path) == []


# -- item 5: an interrupted deposit, run again ----------------------------------------
SIGINT_AFTER_REGISTRATIONS = """
import os, signal, sys, threading, time
from nbank_core.cli import main
from nbank_core.registry.http import HttpRegistry
from nbank_core.registry.sqlite import SqliteRegistry

AFTER = int(sys.argv.pop(1))
calls, lock = [], threading.Lock()

def patch(cls):
    real = cls.add_resource
    def add_resource(self, *args, **kwargs):
        record = real(self, *args, **kwargs)
        with lock:
            calls.append(1)
            n = len(calls)
        if n == AFTER:  # Ctrl-C while the batch runs
            os.kill(os.getpid(), signal.SIGINT)
        if n >= AFTER:  # the main thread handles it before the next item begins
            time.sleep(0.3)
        return record
    cls.add_resource = add_resource

patch(SqliteRegistry)
patch(HttpRegistry)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_an_interrupted_deposit_run_again_completes_the_rest(
    archive: Archive, tmp_path: Path, uniq: str
) -> None:
    """SIGINT after 5 registrations of 30 files: exit 130, the archived ones
    printed (JSON lines) and one summary line; the same command again exits 0,
    reports those as ``exists`` and deposits the rest, each file once."""
    env = env_of(archive.backend, tmp_path)
    sources = {}
    for i in range(30):
        src = tmp_path / "src" / f"re{i:02d}{uniq}.txt"
        src.parent.mkdir(exist_ok=True)
        src.write_text(f"run again {i} {uniq}")
        sources[src] = sha1_file(src)
    args = ["deposit", "-J", "-d", archive.dtype, str(archive.path)]
    args += [str(s) for s in sources]
    first = subprocess.run(
        [sys.executable, "-c", SIGINT_AFTER_REGISTRATIONS, "5", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 130, first.stderr
    results = parse_json_lines(first.stdout)
    assert [r["source"] for r in results] == [str(s) for s in sources]
    done = {r["source"] for r in results if r["status"] == "deposited"}
    assert {r["status"] for r in results} == {"deposited", "skipped"}
    assert 5 <= len(done) < 30
    assert lines(first.stderr) == [
        f"nbank: interrupted by SIGINT: {len(done)} of 30 files archived, "
        f"{30 - len(done)} not attempted; run the same command again to deposit "
        "the rest"
    ]
    assert staging_entries(archive.path) == []
    assert len(resources(archive.path)) == len(done)

    again = nbank(args, env)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    status = {r["source"]: r["status"] for r in parse_json_lines(again.stdout)}
    assert status == {
        str(s): "exists" if str(s) in done else "deposited" for s in sources
    }
    archived = resources(archive.path)
    assert len(archived) == 30 and not any(s.exists() for s in sources)
    assert {sha1_file(p) for p in archived} == set(sources.values())
    records = list(archive.registry.search(archive=name_of(archive)))
    assert sorted(r["name"] for r in records) == sorted(s.stem for s in sources)
    assert staging_entries(archive.path) == []
