"""Eight processes depositing into one archive at once, with names and contents that
overlap, against django-neurobank on PostgreSQL and against the embedded registry.

Every name is offered by four processes (two contents, each offered twice), and
one content is offered under four names by two processes each (the registry keeps
sha1 unique). The processes are either ``nbank deposit`` commands (moving their
files) or workers calling :func:`nbank_core.deposit` with ``keep_source`` and
``exist_ok``; they are held at a gate until all eight are ready. Afterwards each
name has exactly one file and one record, every loser got one clear line, every
source is in place or archived, ``staging/`` is empty and ``nbank check`` is clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from postgres import PostgresUnavailable, start_postgres
from servers import DjangoRegistry, start_django_registry

from nbank_core import init_archive
from nbank_core.archive import ArchiveConfig
from nbank_core.registry import open_registry

NBANK = str(Path(sys.executable).with_name("nbank"))
PROCESSES = 8
NAMES = 16  # each offered by 4 processes: 8 processes x 8 names
DUP_NAMES = 4  # one content under 4 names, each offered by 2 processes
GATE_TIMEOUT = 30.0
RUN_TIMEOUT = 180.0


# -- the registries ------------------------------------------------------------
@pytest.fixture(scope="module")
def pg_django(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoRegistry]:
    """django-neurobank on a PostgreSQL 15 started for this module."""
    try:
        pg = start_postgres()
    except PostgresUnavailable as err:
        pytest.skip(f"PostgreSQL is not available: {err}")
    try:
        with start_django_registry(
            tmp_path_factory.mktemp("django-pg"),
            database="postgres",
            postgres_dsn=pg.django_dsn,
            page_size=100,
        ) as server:
            yield server
    finally:
        pg.stop()


@dataclass
class Target:
    kind: str
    url: str
    auth: tuple[str, str] | None

    @property
    def env(self) -> dict[str, str]:
        env = {"NBANK_REGISTRY": self.url}
        if self.auth:
            env["NBANK_AUTH"] = ":".join(self.auth)
        return env


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "sqlite":
        return Target("sqlite", "sqlite://" + str(tmp_path / "registry.sqlite"), None)
    server = request.getfixturevalue("pg_django")
    return Target("postgres", server.url, server.auth)


@dataclass
class Setup:
    cfg: ArchiveConfig
    name: str
    dtype: str
    target: Target
    env: dict[str, str]


@pytest.fixture
def setup(target: Target, tmp_path: Path, uniq: str) -> Setup:
    with open_registry(target.url, auth=target.auth, create=True) as reg:
        name = f"conc-{uniq}"
        cfg = init_archive(tmp_path / "archive", registry=reg, name=name)
        dtype = f"txt-{uniq}"
        reg.add_datatype(dtype, "text/plain")
    env = {**os.environ, **target.env, "NBANK_HOME": str(tmp_path / "home")}
    return Setup(cfg, name, dtype, target, env)


# -- the offers ----------------------------------------------------------------
@dataclass(frozen=True)
class Offer:
    process: int
    name: str
    content: bytes
    source: Path

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.content).hexdigest()


def make_offers(root: Path, uniq: str) -> list[list[Offer]]:
    """Writes each process's source files; returns its offers in its own order.

    Name ``k`` is offered by the processes of the same parity, two of them with
    one content and two with another; the ``dup`` names share one content.
    """
    plan: list[list[Offer]] = [[] for _ in range(PROCESSES)]
    for k in range(NAMES):
        name = f"n{k:02d}-{uniq}"
        for p in range(k % 2, PROCESSES, 2):
            variant = (p // 2) % 2
            content = f"{name} variant {variant}\n".encode() * (1 + 50 * variant)
            plan[p].append(Offer(p, name, content, Path()))
    shared = f"the same bytes under several names {uniq}\n".encode()
    for p in range(PROCESSES):
        plan[p].append(Offer(p, f"dup{p % DUP_NAMES}-{uniq}", shared, Path()))
    out = []
    for p, offers in enumerate(plan):
        src = root / f"p{p}"
        src.mkdir(parents=True)
        placed = []
        for o in offers:
            path = src / f"{o.name}.txt"
            path.write_bytes(o.content)
            placed.append(Offer(p, o.name, o.content, path))
        random.Random(p).shuffle(placed)
        out.append(placed)
    return out


@dataclass
class Outcome:
    offer: Offer
    status: str
    error: str | None
    error_type: str | None = None
    path: str | None = None


# -- running the processes -------------------------------------------------------
#: a depositing process that is not the CLI: opens the registry, waits at the gate
#: (its stdin), calls deposit() with keep_source and exist_ok, prints JSON lines
WORKER = """\
import json, sys, time
from pathlib import Path
from nbank_core import DepositItem, Settings, deposit
archive, dtype = sys.argv[1:3]
with Settings.from_env().open() as reg:  # NBANK_REGISTRY, NBANK_AUTH
    reg.get_datatype(dtype)  # connected and warm before the gate opens
    items = [DepositItem(Path(s), name=n) for s, n in json.load(sys.stdin)]
    began = time.time()
    done = deposit(archive, items, dtype=dtype, registry=reg, keep_source=True,
                   exist_ok=True)
    ended = time.time()
for r in done:
    kind = type(r.exception).__name__ if r.exception else None
    print(json.dumps({**r.as_dict(), "error_type": kind}))
print(json.dumps({"began": began, "ended": ended}))
"""


def _waiting_on_stdin(pid: int) -> bool:
    """True when the process sleeps reading a pipe (at the gate); False if that
    cannot be told here."""
    try:
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def run_gated(
    cmd: list[str], inputs: list[str], env: dict[str, str], cwd: Path
) -> list[tuple[int, str, str]]:
    """Starts one ``cmd`` per input in ``cwd`` and, once all of them wait on their
    stdin, writes every input at once; returns each ``(status, stdout, stderr)``."""
    procs = [
        subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,  # not a checkout, whose nbank_core would shadow the installed
            text=True,
        )
        for _ in inputs
    ]
    try:
        deadline = time.monotonic() + GATE_TIMEOUT
        while not all(_waiting_on_stdin(p.pid) for p in procs):
            assert all(p.poll() is None for p in procs), "a deposit exited early"
            if time.monotonic() > deadline:
                break  # the gate cannot be seen here: open it anyway
            time.sleep(0.02)
        for p, text in zip(procs, inputs, strict=True):
            assert p.stdin is not None
            p.stdin.write(text)
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        # each writes a few kilobytes at most: far below a pipe's buffer
        for p in procs:
            p.wait(timeout=RUN_TIMEOUT)
        return [(p.returncode, p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for pipe in (p.stdin, p.stdout, p.stderr):
                if pipe is not None:
                    pipe.close()


def run_cli(setup: Setup, plan: list[list[Offer]]) -> list[list[Outcome]]:
    """One ``nbank deposit -j -@`` per process, the file names on its stdin."""
    cmd = [NBANK, "deposit", "-J", "-d", setup.dtype, str(setup.cfg.path), "-@"]
    inputs = ["".join(f"{o.source}\n" for o in offers) for offers in plan]
    answers = run_gated(cmd, inputs, setup.env, setup.cfg.path.parent)
    return [
        _cli_outcomes(rc, offers, out, err)
        for offers, (rc, out, err) in zip(plan, answers, strict=True)
    ]


def _outcomes(offers: list[Offer], lines: list[dict[str, Any]]) -> list[Outcome]:
    """One process's JSON results, one per offer."""
    by_source = {str(o.source): o for o in offers}
    assert sorted(r["source"] for r in lines) == sorted(by_source)
    return [
        Outcome(
            by_source[r["source"]],
            r["status"],
            r.get("error"),
            r.get("error_type"),
            r.get("path"),
        )
        for r in lines
    ]


def _cli_outcomes(rc: int, offers: list[Offer], out: str, err: str) -> list[Outcome]:
    """Parses one process's JSON lines and checks its stderr and exit status."""
    assert "Traceback" not in err, err
    outcomes = _outcomes(offers, [json.loads(line) for line in out.splitlines()])
    failed = [o for o in outcomes if o.status == "failed"]
    lines = err.splitlines()
    # one line per lost file, then the count; nothing else
    assert len(lines) == len(failed) + (1 if failed else 0), err
    for o in failed:
        assert f"nbank: {o.offer.source}: {o.error}" in lines, err
    if failed:
        assert lines[-1] == (
            f"nbank: {len(failed)} of {len(offers)} files were not deposited"
        ), err
    assert rc == (1 if failed else 0), (rc, err)
    return outcomes


def run_api(setup: Setup, plan: list[list[Offer]]) -> list[list[Outcome]]:
    """One Python process per plan calling ``deposit``; asserts that all eight
    were depositing at the same moment."""
    cmd = [sys.executable, "-c", WORKER, str(setup.cfg.path), setup.dtype]
    inputs = [json.dumps([(str(o.source), o.name) for o in offers]) for offers in plan]
    answers = run_gated(cmd, inputs, setup.env, setup.cfg.path.parent)
    outcomes, spans = [], []
    for offers, (rc, out, err) in zip(plan, answers, strict=True):
        assert rc == 0 and err == "", err
        *results, span = [json.loads(line) for line in out.splitlines()]
        spans.append((span["began"], span["ended"]))
        outcomes.append(_outcomes(offers, results))
    assert max(b for b, _ in spans) < min(e for _, e in spans), spans
    return outcomes


# -- what must hold afterwards -------------------------------------------------------
def _archived_files(cfg: ArchiveConfig) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for shard in cfg.resources_dir.iterdir():
        for f in shard.iterdir():
            found.setdefault(f.name.partition(".")[0], []).append(f)
    return found


def check_outcome(
    setup: Setup, plan: list[list[Offer]], outcomes: list[list[Outcome]], moved: bool
) -> dict[str, Any]:
    """Asserts that nothing was lost or doubled and that every loser was told why
    in one line (and truly: the name or the content is taken); returns figures
    for the report."""
    cfg = setup.cfg
    flat = [o for per in outcomes for o in per]
    assert len(flat) == sum(len(p) for p in plan)
    by_name: dict[str, list[Outcome]] = {}
    for o in flat:
        by_name.setdefault(o.offer.name, []).append(o)
    dup_names = sorted(n for n in by_name if n.startswith("dup"))
    files = _archived_files(cfg)
    with open_registry(setup.target.url, auth=setup.target.auth, create=True) as reg:
        records = reg.get_resources(list(by_name))
        in_archive = {r["name"] for r in reg.search(archive=setup.name)}

    winners: dict[str, Outcome] = {}
    for name, offers in by_name.items():
        won = [o for o in offers if o.status == "deposited"]
        assert len(won) <= 1, f"'{name}' deposited {len(won)} times"
        if won:
            winners[name] = won[0]
    dup_won = [n for n in dup_names if n in winners]
    assert len(dup_won) == 1, f"one content registered under {dup_won}"
    assert set(winners) == (set(by_name) - set(dup_names)) | set(dup_won)

    # each winning name: one file, one record, right sha1 and location
    assert set(records) == set(winners), set(records) ^ set(winners)
    assert in_archive == set(winners)
    assert set(files) == set(winners), set(files) ^ set(winners)
    for name, won in winners.items():
        record, paths = records[name], files[name]
        assert paths == [cfg.resource_path(name, ".txt")], paths
        assert record["sha1"] == won.offer.sha1
        assert hashlib.sha1(paths[0].read_bytes()).hexdigest() == won.offer.sha1
        assert record["locations"] == [setup.name]
        assert won.path == str(paths[0])

    # every loser: one clear line saying the name or the content is taken
    kinds: Counter[str] = Counter()
    for o in flat:
        if o.status == "deposited":
            continue
        won = winners.get(o.offer.name)
        same = won is not None and won.offer.sha1 == o.offer.sha1
        if o.status == "exists":  # the same content under the same name is done
            assert same, o
            assert o.path == str(files[o.offer.name][0])
            kinds["exists: same content, same name"] += 1
            continue
        assert o.status == "failed", o
        assert o.error and "\n" not in o.error, o
        assert "already" in o.error, o
        assert o.offer.name in o.error or o.offer.sha1 in o.error, o
        if o.error_type is not None:
            assert o.error_type == "AlreadyExists", o
        if not moved:  # exist_ok: only a different content may fail
            assert not same, o
        kinds[_loss_kind(o.error)] += 1

    # every source intact where it was, or archived (moved away) by its winner
    for o in flat:
        if moved and o.status == "deposited":
            assert not o.offer.source.exists(), o
        else:
            assert o.offer.source.read_bytes() == o.offer.content, o
    assert list(cfg.staging_dir.iterdir()) == []

    check = subprocess.run(
        [NBANK, "check", str(cfg.path)],
        env=setup.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == ""
    figures = {"offers": len(flat), "deposited": len(winners), "losers": dict(kinds)}
    return figures


def _loss_kind(error: str) -> str:
    """What the loser was told, in short."""
    for phrase, kind in (
        ("is already registered in", "name taken before the batch"),
        ("already registered with different content", "name taken, other content"),
        ("this name already exists", "name taken when registering"),
        ("this sha1 already exists", "content taken (sha1) when registering"),
    ):
        if phrase in error:
            return kind
    return "other AlreadyExists"


def _report(label: str, figures: dict[str, Any], seconds: float) -> None:
    print(f"\n{label}: {json.dumps(figures)} in {seconds:.1f} s")


# -- the tests -----------------------------------------------------------------------
@pytest.mark.slow
def test_eight_nbank_deposits_at_once(setup: Setup, tmp_path: Path, uniq: str) -> None:
    """``nbank deposit`` x 8: moved sources, no exist_ok; exit 1 for the losers."""
    plan = make_offers(tmp_path / "sources", uniq)
    start = time.monotonic()
    outcomes = run_cli(setup, plan)
    figures = check_outcome(setup, plan, outcomes, moved=True)
    label = f"nbank deposit x{PROCESSES} ({setup.target.kind})"
    _report(label, figures, time.monotonic() - start)


@pytest.mark.slow
def test_eight_deposit_calls_at_once(setup: Setup, tmp_path: Path, uniq: str) -> None:
    """``deposit(keep_source=True, exist_ok=True)`` in 8 processes: copies, and the
    same content under the same name is a success (``exists``)."""
    plan = make_offers(tmp_path / "sources", uniq)
    start = time.monotonic()
    outcomes = run_api(setup, plan)
    figures = check_outcome(setup, plan, outcomes, moved=False)
    label = f"deposit() x{PROCESSES} ({setup.target.kind})"
    _report(label, figures, time.monotonic() - start)
