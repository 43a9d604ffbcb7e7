"""Fault injection for the crash-safety tests: sources with known hashes, tmpfs
mounts, a real ``nbank deposit`` killed at a chosen point of its progress, and the
invariants an archive must meet after ``nbank check --fix``. For example::

    sources = make_sources(tmp_path / "src", random.Random(1), tag="t1")
    run = deposit_and_kill(cfg, sources, dtype, env, kill_at=0.5, jitter=0.0,
                           work=tmp_path)
    fix = nbank(["check", "--fix", "-j", str(cfg.path)], env)
    outcome = verify(cfg, registry, archive_name, sources, parse_json_lines(fix.stdout))
    assert not outcome.problems
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nbank_core import ArchiveConfig, sha1_file
from nbank_core.registry import Registry

NBANK = str(Path(sys.executable).with_name("nbank"))
POLL = 0.003  # seconds between looks at the archive while a deposit runs
DEPOSIT_TIMEOUT = 120.0
SIGNAL_GRACE = 10.0  # seconds a deposit may take to stop after SIGINT or SIGTERM


# -- sources -----------------------------------------------------------------------
@dataclasses.dataclass
class Sources:
    """Files to deposit, each with the sha1 computed before anything touched it."""

    directory: Path
    sha1: dict[Path, str]  # path -> hex
    order: list[Path]  # the order given to nbank deposit

    def name(self, path: Path) -> str:
        return path.stem

    @property
    def by_name(self) -> dict[str, Path]:
        return {self.name(p): p for p in self.order}


def make_sources(
    directory: Path,
    rng: random.Random,
    *,
    tag: str,
    n_small: int = 200,
    big_sizes: Sequence[int] = (),
    small_size: tuple[int, int] = (64, 4096),
) -> Sources:
    """Writes ``n_small`` small files and one file per size in ``big_sizes`` with
    random content (unique across trials: ``tag`` is in every file, since the
    registry keeps sha1s unique) and returns them in a shuffled order."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[Path, bytes | int] = {}
    for i in range(n_small):
        files[directory / f"s{i:03d}-{tag}.dat"] = rng.randbytes(
            rng.randint(*small_size)
        )
    for i, size in enumerate(big_sizes):
        files[directory / f"big{i}-{tag}.bin"] = size
    sha1 = {}
    block = rng.randbytes(1 << 20)
    for path, content in files.items():
        if isinstance(content, int):  # big: a shared random block, made unique
            with path.open("wb") as fp:
                fp.write(f"{path.name}\n".encode())
                for start in range(0, content, len(block)):
                    fp.write(block[: min(len(block), content - start)])
        else:
            path.write_bytes(f"{path.name}\n".encode() + content)
        sha1[path] = sha1_file(path)
    order = list(files)
    rng.shuffle(order)
    return Sources(directory, sha1, order)


# -- filesystems ---------------------------------------------------------------------
def device(path: Path) -> int:
    return os.stat(path).st_dev


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """Mounts a tmpfs of ``size`` (``mount -o size=``) at ``mountpoint`` and
    unmounts it afterwards. Raises OSError (with mount's message) if it cannot."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mountpoint],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise OSError(f"mount -t tmpfs failed: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", mountpoint], check=False)


# -- running nbank ---------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """A finished (or killed) ``nbank`` command."""

    returncode: int
    stdout: str
    stderr: str
    killed: bool = False
    progress: float = 0.0  # the fraction of the work done when it was killed
    shared: list[str] = dataclasses.field(default_factory=list)  # right after it
    stop_seconds: float = 0.0  # from SIGINT or SIGTERM to the deposit's exit

    @property
    def tracebacks(self) -> int:
        return (self.stdout + self.stderr).count("Traceback (most recent call last)")


def nbank(args: Sequence[str], env: Mapping[str, str], timeout: float = 120.0) -> Run:
    """Runs ``nbank ARGS`` to completion."""
    done = subprocess.run(
        [NBANK, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def progress(cfg: ArchiveConfig, sources: Sources) -> tuple[int, int, int]:
    """``(staged, published, removed)``: entries in staging, files under resources/,
    sources gone from their path. Cheap enough to poll (a few directory listings)."""
    staged = len(os.listdir(cfg.staging_dir)) if cfg.staging_dir.is_dir() else 0
    published = 0
    with contextlib.suppress(FileNotFoundError):
        for shard in os.scandir(cfg.resources_dir):
            published += len(os.listdir(shard.path))
    removed = len(sources.order) - len(os.listdir(sources.directory))
    return staged, published, removed


def deposit_and_kill(
    cfg: ArchiveConfig,
    sources: Sources,
    dtype: str,
    env: Mapping[str, str],
    *,
    kill_at: float | None,
    jitter: float,
    work: Path,
    victim: subprocess.Popen | None = None,
    sig: int = signal.SIGKILL,
) -> Run:
    """Starts ``nbank deposit`` of ``sources`` and SIGKILLs it (or the process
    group of ``victim``, a server it talks to) once the work done (files published
    plus sources removed, out of twice the number of files) reaches ``kill_at`` (a
    negative value: as soon as anything is staged), after ``jitter`` more seconds;
    then waits for the deposit. ``kill_at=None`` lets it finish.

    With ``sig`` SIGINT or SIGTERM, that signal goes to the deposit process alone
    (as Ctrl-C or ``kill`` would) and the deposit must exit by itself within
    ``SIGNAL_GRACE`` seconds (else it is SIGKILLed and TimeoutError raised). The
    sources sharing an inode with an archived file right after the kill (or the
    exit) are in ``Run.shared``."""
    out, err = work / "deposit.out", work / "deposit.err"
    total = 2 * len(sources.order)
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(
            [
                NBANK,
                "deposit",
                "-J",  # each file's result as a JSON line
                "-d",
                dtype,
                str(cfg.path),
                *map(str, sources.order),
            ],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            start_new_session=True,
        )
    target = victim or proc
    killed, done, stop_seconds = False, 0.0, 0.0
    deadline = time.monotonic() + DEPOSIT_TIMEOUT
    try:
        while kill_at is not None and proc.poll() is None:
            staged, published, removed = progress(cfg, sources)
            done = (published + removed) / total
            if (staged or published) if kill_at < 0 else done >= kill_at:
                time.sleep(jitter)
                if proc.poll() is None and sig != signal.SIGKILL:
                    sent = time.monotonic()
                    os.kill(proc.pid, sig)
                    try:
                        proc.wait(timeout=SIGNAL_GRACE)
                    except subprocess.TimeoutExpired:
                        raise TimeoutError(
                            f"nbank deposit did not stop within {SIGNAL_GRACE} s "
                            f"of {signal.Signals(sig).name}"
                        ) from None
                    stop_seconds = time.monotonic() - sent
                    killed = True
                elif proc.poll() is None:
                    kill_group(target.pid)
                    target.wait()
                    killed = True
                break
            if time.monotonic() > deadline:
                raise TimeoutError("nbank deposit did not finish")
            time.sleep(POLL)
        proc.wait(timeout=DEPOSIT_TIMEOUT)
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
            proc.wait()
    shared = shared_inodes(cfg, sources)
    return Run(
        proc.returncode,
        out.read_text(),
        err.read_text(),
        killed,
        done,
        shared,
        stop_seconds,
    )


def half_closed(port: int) -> int:
    """How many TCP connections to local ``port`` the peer has closed and the
    server not yet (CLOSE_WAIT): requests of a killed client still being served."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as fp:
            for line in list(fp)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":
                    count += 1
    return count


def wait_until_served(port: int, timeout: float = 60.0) -> float:
    """Waits until the server on ``port`` has finished the requests of a killed
    client (they are served, and may register, after the client died); returns
    the seconds waited."""
    started = time.monotonic()
    while half_closed(port) and time.monotonic() - started < timeout:
        time.sleep(0.05)
    return time.monotonic() - started


def kill_group(pid: int) -> None:
    """SIGKILLs the process group led by ``pid`` (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# -- what the archive looks like ---------------------------------------------------------
def phases(
    cfg: ArchiveConfig, registry: Registry, archive: str, sources: Sources
) -> Counter[str]:
    """Names the phases of the deposit transaction that a kill left items in:
    ``untouched``, ``staged`` (staged, not registered), ``registered`` (a record,
    no published file), ``published`` (published, staged name or source still
    there) and ``finished`` (source gone, file archived)."""
    records = {r["name"]: r for r in registry.search(archive=archive)}
    staged_ids = {e.name.partition("~")[0] for e in _entries(cfg.staging_dir)}
    hit: Counter[str] = Counter()
    for path in sources.order:
        name = sources.name(path)
        target = cfg.resource_path(name, path.suffix)
        if os.path.lexists(target):
            gone = not os.path.lexists(path)
            hit["finished" if gone and name not in staged_ids else "published"] += 1
        elif name in records:
            hit["registered"] += 1
        elif name in staged_ids:
            hit["staged"] += 1
        else:
            hit["untouched"] += 1
    return hit


def shared_inodes(cfg: ArchiveConfig, sources: Sources) -> list[str]:
    """The sources that share an inode with a file under ``resources/``: editing
    such a source would change the archived file."""
    inodes = set()
    for shard in _entries(cfg.resources_dir):
        for path in _entries(shard):
            st = os.lstat(path)
            inodes.add((st.st_dev, st.st_ino))
    shared = []
    for path in sources.order:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) in inodes:
                shared.append(str(path))
    return shared


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except FileNotFoundError:
        return []


@dataclasses.dataclass
class Outcome:
    """What the invariants found after ``check --fix``; every count must be 0."""

    lost: list[str] = dataclasses.field(default_factory=list)
    orphans: list[str] = dataclasses.field(default_factory=list)
    corrupt: list[str] = dataclasses.field(default_factory=list)
    strays: list[str] = dataclasses.field(default_factory=list)
    staging: list[str] = dataclasses.field(default_factory=list)
    dangling: list[str] = dataclasses.field(default_factory=list)
    shared: list[str] = dataclasses.field(default_factory=list)
    archived: int = 0
    at_source: int = 0

    @property
    def problems(self) -> dict[str, list[str]]:
        return {
            k: v
            for k, v in (
                ("lost", self.lost),
                ("orphan records", self.orphans),
                ("truncated or corrupt", self.corrupt),
                ("unregistered files", self.strays),
                ("staging leftovers", self.staging),
                ("sources sharing an inode with an archived file", self.shared),
            )
            if v
        }


def verify(
    cfg: ArchiveConfig,
    registry: Registry,
    archive: str,
    sources: Sources,
    findings: Sequence[Mapping[str, Any]] = (),
) -> Outcome:
    """Checks the invariants: each source is intact at its path or archived with
    its sha1; each record of ``archive`` has its file with the registered sha1;
    each file under ``resources/`` has a record and the sha1 of its source; and
    ``staging/`` holds only what ``check --fix`` (``findings``) kept for a reason
    other than loss. Records of the sources' names located in no archive (which
    ``check`` of one archive cannot see) are listed in ``dangling``."""
    out = Outcome()
    records = {r["name"]: r for r in registry.search(archive=archive)}
    named = registry.get_resources(sources.by_name)
    out.dangling = sorted(n for n, r in named.items() if not r.get("locations"))
    for name, record in records.items():
        path = cfg.find_file(name, record.get("filename"))
        if path is None:
            out.orphans.append(name)
        elif sha1_file(path) != record.get("sha1"):
            out.corrupt.append(f"{path}: sha1 differs from the record")
    by_name = sources.by_name
    inodes = set()
    for shard in _entries(cfg.resources_dir):
        for path in _entries(shard):
            st = os.lstat(path)
            inodes.add((st.st_dev, st.st_ino))
            name = path.name.partition(".")[0]
            if name not in records:
                out.strays.append(str(path))
            elif name in by_name and sha1_file(path) != sources.sha1[by_name[name]]:
                out.corrupt.append(f"{path}: not the content of {by_name[name]}")
    for path, digest in sources.sha1.items():
        name = sources.name(path)
        if os.path.lexists(path):
            out.at_source += 1
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) in inodes:
                out.shared.append(str(path))
            if sha1_file(path) != digest:
                out.corrupt.append(f"{path}: the source changed")
            continue
        record = records.get(name)
        found = cfg.find_file(name, record.get("filename")) if record else None
        if record is None or found is None or record.get("sha1") != digest:
            out.lost.append(str(path))
        else:
            out.archived += 1
    kept = {f["path"]: f.get("action") or "" for f in findings}
    for entry in _entries(cfg.staging_dir):
        out.staging.append(f"{entry} ({kept.get(str(entry), 'not reported')})")
    return out


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def failed_sources(stderr: str, prefix: str = "nbank: ") -> set[str]:
    """The sources ``nbank deposit`` reported as failed (``nbank: SOURCE: why``)."""
    out = set()
    for line in stderr.splitlines():
        if line.startswith(prefix) and ": " in line[len(prefix) :]:
            out.add(line[len(prefix) :].partition(": ")[0])
    return out


# -- the figures for the closing note ------------------------------------------------------
@dataclasses.dataclass
class Figures:
    """Per-fault counts for the summary table."""

    fault: str
    trials: int = 0
    files: int = 0
    lost: int = 0
    orphans_after_fix: int = 0
    dangling_after_fix: int = 0
    shared_inodes: int = 0  # sources sharing an archived file's inode, before and
    # after check --fix
    left_for_fix: int = 0  # check --fix findings after a SIGINT or SIGTERM
    stop_seconds: float = 0.0  # the longest wait from SIGINT/SIGTERM to the exit
    tracebacks: int = 0
    withdrawn_by_fix: int = 0
    completed_by_fix: int = 0
    rolled_back_by_fix: int = 0
    failures_reported: int = 0
    phases: Counter[str] = dataclasses.field(default_factory=Counter)
    served_after_kill: float = 0.0  # seconds the registry served a dead client
    seconds: float = 0.0

    def add_fix(self, findings: Sequence[Mapping[str, Any]]) -> None:
        for f in findings:
            action = f.get("action") or ""
            if f["kind"] == "missing" and f.get("fixed"):
                self.withdrawn_by_fix += 1
            elif action.startswith("completed"):
                self.completed_by_fix += 1
            elif f["kind"] == "staging-leftover" and f.get("fixed"):
                self.rolled_back_by_fix += 1

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["phases"] = dict(sorted(self.phases.items()))
        d["seconds"] = round(self.seconds, 1)
        d["served_after_kill"] = round(self.served_after_kill, 2)
        d["stop_seconds"] = round(self.stop_seconds, 2)
        return d


COLUMNS = [
    ("fault", "fault"),
    ("trials", "trials"),
    ("files", "files"),
    ("lost", "lost"),
    ("orphans_after_fix", "orphans"),
    ("dangling_after_fix", "nowhere"),
    ("shared_inodes", "shared inodes"),
    ("tracebacks", "tracebacks"),
    ("failures_reported", "failed+reported"),
    ("completed_by_fix", "completed"),
    ("rolled_back_by_fix", "staged removed"),
    ("withdrawn_by_fix", "withdrawn"),
    ("left_for_fix", "left after signal"),
    ("stop_seconds", "stop s"),
    ("served_after_kill", "wait s"),
    ("seconds", "s"),
]


def table(rows: Sequence[Figures]) -> str:
    """The summary as a plain-text table, with the phases each fault hit."""
    cells = [[h for _, h in COLUMNS]]
    for r in rows:
        d = r.as_dict()
        cells.append([str(d[k]) for k, _ in COLUMNS])
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        if r.phases:
            hit = ", ".join(f"{k} {v}" for k, v in sorted(r.phases.items()))
            lines.append(f"{r.fault}: items left per phase by the kills: {hit}")
    return "\n".join(lines)
