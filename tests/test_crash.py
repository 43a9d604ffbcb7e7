"""Crash safety: a real ``nbank deposit`` is SIGKILLed at many points (sources on
the archive's filesystem and on another one), its registry is SIGKILLed
mid-batch, and the archive's disk fills up; after ``nbank check --fix`` nothing
is lost, no record points at nothing, no truncated file has a final name, and a
second ``nbank check`` is clean.

The kill points are seeded (``NBANK_CRASH_SEED``, default below; a failure names
the seed, trial and kill point). Trials per fault: ``NBANK_CRASH_TRIALS`` (embedded
registry), ``NBANK_CRASH_HTTP_TRIALS`` (django-neurobank),
``NBANK_CRASH_REGISTRY_TRIALS`` (registry killed); raise them for a soak run. Run
with ``-s`` for the summary table; ``NBANK_CRASH_REPORT=path.json`` also writes it
as JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from crash_helpers import (
    Figures,
    Outcome,
    Run,
    Sources,
    deposit_and_kill,
    device,
    failed_sources,
    make_sources,
    nbank,
    parse_json_lines,
    phases,
    shared_inodes,
    table,
    tmpfs,
    verify,
    wait_until_served,
)
from servers import DjangoRegistry, start_django_registry

from nbank_core import ArchiveConfig, init_archive, sha1_file
from nbank_core.registry import Registry, open_registry

SEED = int(os.environ.get("NBANK_CRASH_SEED", "20240606"))
TRIALS = int(os.environ.get("NBANK_CRASH_TRIALS", "6"))
HTTP_TRIALS = int(os.environ.get("NBANK_CRASH_HTTP_TRIALS", str(max(2, TRIALS // 3))))
REGISTRY_TRIALS = int(os.environ.get("NBANK_CRASH_REGISTRY_TRIALS", "1"))
BIG = (5_000_000, 6_000_000, 9_000_000)  # in flight while the small ones go

pytestmark = pytest.mark.slow


# -- fixtures ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Figures]]:
    """Collects each fault's figures; prints the table (and writes the JSON file
    named by ``NBANK_CRASH_REPORT``) when the module is done."""
    rows: dict[str, Figures] = {}
    yield rows
    if not rows:
        return
    print(f"\n\ncrash safety (seed {SEED}):\n" + table(list(rows.values())))
    path = os.environ.get("NBANK_CRASH_REPORT")
    if path:
        data = {"seed": SEED, "faults": [r.as_dict() for r in rows.values()]}
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


@pytest.fixture(scope="module")
def other_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on another filesystem than the archives (a tmpfs mounted here,
    else /dev/shm), so a deposit must copy instead of linking."""
    base = tmp_path_factory.mktemp("otherfs")
    try:
        with tmpfs(base / "mnt", "192m") as mnt:
            yield mnt
            return
    except OSError as err:
        reason = str(err)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and device(shm) != device(base):
        d = Path(tempfile.mkdtemp(prefix="nbank-crash-", dir=shm))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return
    pytest.skip(f"no second filesystem: {reason}; /dev/shm is not one either")


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoRegistry]:
    """A django-neurobank for this module only (the killed-registry test has its
    own): large pages, so listing an archive's records is one request."""
    with start_django_registry(
        tmp_path_factory.mktemp("crash-registry"), page_size=500
    ) as server:
        yield server


class Target:
    """Where a trial's archive is registered: a fresh embedded registry per
    archive, or the module's django-neurobank."""

    def __init__(self, kind: str, server: DjangoRegistry | None) -> None:
        self.kind, self.server = kind, server
        self.dtype = f"crash-{uuid.uuid4().hex[:8]}"
        self._http_dtype = False

    def open(self, work: Path) -> Registry:
        if self.server is None:
            reg = open_registry(
                "sqlite://" + str(work / "registry.sqlite"), create=True
            )
            reg.add_datatype(self.dtype, "application/octet-stream")
            return reg
        reg = open_registry(self.server.url, auth=self.server.auth)
        if not self._http_dtype:
            reg.add_datatype(self.dtype, "application/octet-stream")
            self._http_dtype = True
        return reg

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(urlsplit(self.server.url).port or 80)

    def env(self, work: Path) -> dict[str, str]:
        env = {"NBANK_HOME": str(work / "home")}
        if self.server is not None:
            env["NBANK_AUTH"] = ":".join(self.server.auth)
        return env


@pytest.fixture(params=["sqlite", "http"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "sqlite":
        return Target("sqlite", None)
    return Target("http", request.getfixturevalue("crash_server"))


# -- one trial ---------------------------------------------------------------------
def kill_points(n: int, rng: random.Random) -> list[float]:
    """Stratified kill points: the first trial as soon as anything is staged, the
    others spread over the progress range, most in publishing and some in the
    clean-up (sources removed) phase."""
    points = [-1.0]
    for i in range(n - 1):
        points.append(0.75 * (i + rng.random()) / max(1, n - 1))
    return points


def context(fault: str, trial: int, kill_at: float, run: Run, work: Path) -> str:
    return (
        f"[{fault} seed={SEED} trial={trial} kill_at={kill_at:.3f} "
        f"killed={run.killed} at progress {run.progress:.3f}; work dir {work}] "
        f"deposit exit {run.returncode}, stderr tail: {run.stderr[-600:]!r}"
    )


def archive_name(tag: str) -> str:
    return f"c{tag}"[:32]


def check_and_verify(
    fig: Figures,
    cfg: ArchiveConfig,
    reg: Registry,
    name: str,
    sources: Sources,
    env: dict[str, str],
    where: str,
    *,
    nothing_to_fix: bool = False,
) -> Outcome:
    """``nbank check --fix``, the invariants, then a second ``nbank check``.
    ``nothing_to_fix``: the deposit stopped by itself, so check --fix must find
    nothing at all."""
    assert not shared_inodes(cfg, sources), where  # before the fix too
    fix = nbank(["check", "--fix", "-j", str(cfg.path)], env)
    findings = parse_json_lines(fix.stdout)
    fig.add_fix(findings)
    if nothing_to_fix:
        fig.left_for_fix += len(findings)
        assert findings == [], f"{where}\nleft for check --fix: {findings}"
    outcome = verify(cfg, reg, name, sources, findings)
    fig.shared_inodes += len(outcome.shared)
    again = nbank(["check", str(cfg.path)], env)
    fig.tracebacks += fix.tracebacks + again.tracebacks
    fig.lost += len(outcome.lost)
    fig.orphans_after_fix += len(outcome.orphans)
    fig.dangling_after_fix += len(outcome.dangling)
    fig.files += len(sources.order)
    assert fix.tracebacks == again.tracebacks == 0, f"{where}\n{fix.stderr}"
    assert not outcome.problems, f"{where}\n{outcome.problems}\nfix: {findings}"
    unfixed = [f for f in findings if not f["fixed"]]
    assert fix.returncode == 0 and not unfixed, f"{where}\nunfixed: {unfixed}"
    assert again.returncode == 0 and again.stdout == "", (
        f"{where}\nsecond check exit {again.returncode}:\n{again.stdout}{again.stderr}"
    )
    assert outcome.archived + outcome.at_source >= len(sources.order)
    return outcome


def crash_trials(
    fault: str,
    target: Target,
    src_root: Path,
    tmp_path: Path,
    report: dict[str, Figures],
    trials: int,
    sig: int = signal.SIGKILL,
) -> Figures:
    """Runs ``trials`` kills of ``nbank deposit`` of fresh sources under
    ``src_root`` into fresh archives; checks, fixes and verifies after each.
    ``sig`` SIGINT or SIGTERM: the deposit is asked to stop, must exit by itself
    with 128 + the signal, report what it archived and leave nothing to fix."""
    fig = report.setdefault(fault, Figures(fault))
    rng = random.Random(f"{SEED}-{fault}")
    started = time.monotonic()
    for trial, kill_at in enumerate(kill_points(trials, rng)):
        tag = f"{trial}{uuid.uuid4().hex[:8]}"
        work = tmp_path / f"t{tag}"
        work.mkdir()
        reg = target.open(work)
        try:
            sources = make_sources(src_root / tag, rng, tag=tag, big_sizes=BIG)
            name = archive_name(tag)
            cfg = init_archive(work / "archive", registry=reg, name=name)
            env = target.env(work)
            run = deposit_and_kill(
                cfg,
                sources,
                target.dtype,
                env,
                kill_at=kill_at,
                jitter=rng.uniform(0.0, 0.03),
                work=work,
                sig=sig,
            )
            where = context(fault, trial, kill_at, run, work)
            fig.trials += 1
            fig.tracebacks += run.tracebacks
            fig.shared_inodes += len(run.shared)
            assert run.tracebacks == 0, where
            assert not run.shared, f"{where}\nsharing an inode: {run.shared}"
            stopped = sig != signal.SIGKILL
            if not run.killed:
                assert run.returncode == 0, where
                fig.phases["done before the kill"] += 1
            else:
                if target.server is not None and not stopped:  # may still register
                    fig.served_after_kill += wait_until_served(target.port)
                fig.phases.update(phases(cfg, reg, name, sources))
            if stopped and run.killed and run.returncode == -sig:
                # the signal came after the deposit had written its whole report
                # and put its handlers back: it was over, nothing to stop
                assert phases(cfg, reg, name, sources) == {
                    "finished": len(sources.order)
                }, where
                assert len(run.stdout.splitlines()) == len(sources.order), where
                fig.phases["done before the signal"] += 1
            elif stopped and run.killed:
                fig.stop_seconds = max(fig.stop_seconds, run.stop_seconds)
                assert_stopped_cleanly(run, sig, cfg, reg, name, sources, where)
            outcome = check_and_verify(
                fig, cfg, reg, name, sources, env, where, nothing_to_fix=stopped
            )
            assert not outcome.dangling, f"{where}\nlocated nowhere: {outcome.dangling}"
            shutil.rmtree(work / "archive")
            shutil.rmtree(sources.directory)
        finally:
            reg.close()
    fig.seconds += time.monotonic() - started
    return fig


def assert_stopped_cleanly(
    run: Run,
    sig: int,
    cfg: ArchiveConfig,
    reg: Registry,
    name: str,
    sources: Sources,
    where: str,
) -> None:
    """After SIGINT or SIGTERM: exit 128 + the signal; each item finished or
    untouched; stdout (-J) gives every file's result and the path of each one
    archived; stderr is one summary line."""
    assert run.returncode == 128 + sig, where
    left = phases(cfg, reg, name, sources)
    assert set(left) <= {"finished", "untouched"}, f"{where}\n{left}"
    results = parse_json_lines(run.stdout)  # -J: one line per file, any status
    assert len(results) == len(sources.order), where
    printed = [r["path"] for r in results if r["status"] == "deposited"]
    archived = set(printed)
    assert len(archived) == len(printed) == left["finished"], where
    assert {r["status"] for r in results} <= {"deposited", "skipped"}, where
    assert all(Path(p).is_file() for p in archived), where
    n = len(sources.order)
    assert run.stderr.splitlines() == [
        f"nbank: interrupted by {signal.Signals(sig).name}: {len(printed)} of {n} "
        f"files archived, {n - len(printed)} not attempted; run the same command "
        "again to deposit the rest"
    ], where


def assert_mid_transaction_hit(fig: Figures) -> None:
    """The kills must have caught items between staging and the end: else the
    trials proved nothing."""
    mid = sum(fig.phases[p] for p in ("staged", "registered", "published"))
    assert mid > 0, f"no kill landed inside a transaction: {dict(fig.phases)}"


# -- SIGKILL of the deposit ----------------------------------------------------------
def test_sigkill_deposit_same_filesystem(
    target: Target, tmp_path: Path, report: dict[str, Figures]
) -> None:
    """Sources beside the archive: staged by hard link."""
    n = TRIALS if target.kind == "sqlite" else HTTP_TRIALS
    fig = crash_trials(
        f"kill deposit, same fs, {target.kind}",
        target,
        tmp_path / "src",
        tmp_path,
        report,
        n,
    )
    assert_mid_transaction_hit(fig)


def test_sigkill_deposit_across_filesystems(
    target: Target, other_fs: Path, tmp_path: Path, report: dict[str, Figures]
) -> None:
    """Sources on another filesystem: staged by an fsynced, verified copy."""
    n = TRIALS if target.kind == "sqlite" else HTTP_TRIALS
    assert device(other_fs) != device(tmp_path)
    fig = crash_trials(
        f"kill deposit, across fs, {target.kind}",
        target,
        other_fs / uuid.uuid4().hex[:8],
        tmp_path,
        report,
        n,
    )
    assert_mid_transaction_hit(fig)


# -- SIGINT and SIGTERM of the deposit ------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_signal_stops_deposit(
    target: Target, sig: int, tmp_path: Path, report: dict[str, Figures]
) -> None:
    """Ctrl-C or ``kill`` of ``nbank deposit``: the items in flight finish, the
    rest are not begun, what was archived is printed, the exit is 130 or 143
    within seconds, and nothing is left for ``check --fix``."""
    n = TRIALS if target.kind == "sqlite" else HTTP_TRIALS
    fig = crash_trials(
        f"{signal.Signals(sig).name} deposit, same fs, {target.kind}",
        target,
        tmp_path / "src",
        tmp_path,
        report,
        n,
        sig=sig,
    )
    assert fig.phases["finished"] and fig.phases["untouched"], dict(fig.phases)


# -- SIGKILL of the registry ---------------------------------------------------------
def restart(server: DjangoRegistry) -> DjangoRegistry:
    """A new server on the killed one's database, port and account."""
    port = urlsplit(server.url).port
    return start_django_registry(
        server.workdir, page_size=500, port=port, superuser=server.auth
    )


def test_registry_killed_mid_batch(tmp_path: Path, report: dict[str, Figures]) -> None:
    """gunicorn's process group is SIGKILLed while a deposit of many files runs
    against it: each file that was not deposited is reported, and nothing is lost
    once a server runs again and ``nbank check --fix`` has run."""
    fault = "kill registry mid-batch"
    fig = report.setdefault(fault, Figures(fault))
    rng = random.Random(f"{SEED}-{fault}")
    started = time.monotonic()
    server = start_django_registry(tmp_path / "registry", page_size=500)
    try:
        dtype = "crash-reg"
        with open_registry(server.url, auth=server.auth) as reg:
            reg.add_datatype(dtype, "application/octet-stream")
        for trial in range(REGISTRY_TRIALS):
            tag = f"r{trial}{uuid.uuid4().hex[:8]}"
            work = tmp_path / tag
            work.mkdir()
            with open_registry(server.url, auth=server.auth) as reg:
                cfg = init_archive(work / "archive", registry=reg, name=tag)
            sources = make_sources(work / "src", rng, tag=tag, n_small=250)
            env = {
                "NBANK_HOME": str(work / "home"),
                "NBANK_AUTH": ":".join(server.auth),
            }
            when = rng.randint(20, 120)  # published files before the kill
            run = deposit_and_kill(
                cfg,
                sources,
                dtype,
                env,
                kill_at=when / (2 * len(sources.order)),
                jitter=0.0,
                work=work,
                victim=server.process,
            )
            where = (
                f"[{fault} seed={SEED} trial={trial} kill after {when} published; "
                f"work dir {work}] deposit exit {run.returncode}, "
                f"stderr tail: {run.stderr[-600:]!r}"
            )
            fig.trials += 1
            fig.tracebacks += run.tracebacks
            assert run.killed, f"{where}: the deposit ended before the registry died"
            assert_failures_reported(fig, run, sources, where)
            server = restart(server)
            with open_registry(server.url, auth=server.auth) as reg:
                fig.phases.update(phases(cfg, reg, tag, sources))
                check_and_verify(fig, cfg, reg, tag, sources, env, where)
            redeposit_the_rest(cfg, sources, dtype, env, where)
            with open_registry(server.url, auth=server.auth) as reg:
                final = verify(cfg, reg, tag, sources)
            assert not final.problems and not final.dangling, f"{where}\n{final}"
            assert final.archived == len(sources.order), where
    finally:
        server.stop()
    fig.seconds += time.monotonic() - started


def assert_failures_reported(fig: Figures, run: Run, sources: Sources, where: str):
    """Exit 1 and no traceback; one line per file that failed, naming it, until
    a few registry failures in a row stop the batch; then one line counting the
    files not attempted, and the summary."""
    assert run.tracebacks == 0, where
    assert run.returncode == 1, where
    left = {str(p) for p in sources.order if p.exists()}
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    summary = f"nbank: {len(left)} of {len(sources.order)} files were not deposited"
    stopped = [ln for ln in lines if " file(s) not attempted: " in ln]
    named = {s for s in failed_sources(run.stderr) if " file(s) " not in s}
    skipped = int(stopped[0].split()[1]) if stopped else 0
    assert named <= left, where
    assert len(named) + skipped == len(left), f"{where}\n{named} + {skipped}"
    assert len(stopped) <= 1, where
    assert lines[-1] == summary, f"{where}\nlast line: {lines[-1]!r}"
    assert len(lines) == len(named) + len(stopped) + 1, f"{where}: {len(lines)} lines"
    fig.failures_reported += len(left)


def redeposit_the_rest(
    cfg: ArchiveConfig, sources: Sources, dtype: str, env: dict[str, str], where: str
) -> None:
    """The files left at their source deposit cleanly on a second try."""
    left = [str(p) for p in sources.order if p.exists()]
    if not left:
        return
    again = nbank(["deposit", "-d", dtype, str(cfg.path), *left], env)
    assert again.returncode == 0 and again.tracebacks == 0, f"{where}\n{again.stderr}"
    assert not any(Path(p).exists() for p in left)


# -- full disk ------------------------------------------------------------------------
def test_full_disk(target: Target, tmp_path: Path, report: dict[str, Figures]) -> None:
    """The archive on a 3 MB tmpfs, 8 MB of sources on another filesystem (so each
    is copied): the files that do not fit fail one by one with the reason, their
    sources stay, no partial file is left, and check --fix is clean."""
    fault = f"full disk, {target.kind}"
    fig = report.setdefault(fault, Figures(fault))
    rng = random.Random(f"{SEED}-{fault}")
    started = time.monotonic()
    work = tmp_path / "work"
    work.mkdir()
    with contextlib.ExitStack() as stack:
        try:
            mnt = stack.enter_context(tmpfs(tmp_path / "full", "3m"))
        except OSError as err:
            pytest.skip(f"cannot mount a small tmpfs for the archive: {err}")
        reg = stack.enter_context(contextlib.closing(target.open(work)))
        tag = uuid.uuid4().hex[:8]
        sources = make_sources(
            work / "src", rng, tag=tag, n_small=20, big_sizes=[400_000] * 20
        )
        assert device(sources.directory) != device(mnt)
        cfg = init_archive(mnt / "archive", registry=reg, name=f"full{tag}")
        env = target.env(work)
        run = deposit_and_kill(
            cfg, sources, target.dtype, env, kill_at=None, jitter=0, work=work
        )
        where = f"[{fault} seed={SEED}] stderr tail: {run.stderr[-600:]!r}"
        fig.trials += 1
        fig.tracebacks += run.tracebacks
        assert_failures_reported(fig, run, sources, where)
        reasons = run.stderr.splitlines()[:-1]
        assert all("No space left on device" in r for r in reasons), where
        assert fig.failures_reported > 0, f"{where}: everything fitted"
        check_and_verify(fig, cfg, reg, f"full{tag}", sources, env, where)
    fig.seconds += time.monotonic() - started


# -- a registration cut short ------------------------------------------------------------
def test_a_record_located_nowhere_is_completed_by_depositing_again(
    target: Target, tmp_path: Path
) -> None:
    """django-neurobank creates a resource, then its location: a registry killed
    in between leaves a record located nowhere, which ``check`` of an archive
    cannot see. Depositing the same content under the name again completes it;
    other content under that name is still refused."""
    tag = uuid.uuid4().hex[:8]
    with contextlib.closing(target.open(tmp_path)) as reg:
        cfg = init_archive(tmp_path / "archive", registry=reg, name=f"cut{tag}")
        same, other = tmp_path / f"cut-{tag}.dat", tmp_path / f"cuto-{tag}.dat"
        same.write_bytes(b"cut short " + tag.encode())
        other.write_bytes(b"other " + tag.encode())
        # a record of `same`, and one of `other`'s name with different content
        for name, sha1 in (
            (same.stem, sha1_file(same)),
            (other.stem, hashlib.sha1(tag.encode()).hexdigest()),
        ):
            reg.add_resource(name, target.dtype, f"cut{tag}", sha1=sha1)
            reg.remove_location(name, f"cut{tag}")
        env = target.env(tmp_path)
        run = nbank(["deposit", "-d", target.dtype, str(cfg.path), str(same)], env)
        assert run.returncode == 0, run.stderr
        located = reg.get_resources([same.stem])[same.stem]["locations"]
        assert len(located) == 1 and not same.exists()
        refused = nbank(["deposit", "-d", target.dtype, str(cfg.path), str(other)], env)
        assert refused.returncode == 1 and refused.tracebacks == 0
        assert "already registered" in refused.stderr and other.exists()
        assert nbank(["check", str(cfg.path)], env).returncode == 0
