"""Soak: 10,000 registrations and lookups from 16 threads sharing one registry
client, against a django-neurobank on loopback (on PostgreSQL when it is installed)
and against the embedded registry, ending with no leaked socket or descriptor.

The threads share one :class:`HttpRegistry` (one keep-alive pool of 16
connections) or one :class:`SqliteRegistry` (a connection per thread). The mix:
4,000 ``add_resource``, 4,000 ``get_resource``, 1,000 bulk ``get_resources`` of 10
names (2 of them unknown) and 1,000 ``search(sha1=...)``; every answer is checked.
This process's open descriptors and its TCP connections to the server are counted
before, during (sampled every 20 ms) and after; after ``close()`` both must be
back to where they started, and the connections must never exceed the pool.

Run with ``-s`` to see the figures; ``NBANK_SOAK_REPORT=FILE`` also writes them
to FILE as JSON. ``NBANK_SOAK_OPERATIONS=N`` runs N operations in the same mix.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from postgres import PostgresUnavailable, start_postgres
from servers import DjangoRegistry, start_django_registry

from nbank_core.registry import Registry
from nbank_core.registry.http import POOL_SIZE, HttpRegistry
from nbank_core.registry.sqlite import SqliteRegistry

THREADS = POOL_SIZE  # 16: as many threads as pooled connections
#: 10,000 by default; NBANK_SOAK_OPERATIONS=N scales the mix (e.g. on a busy machine)
OPERATIONS = int(os.environ.get("NBANK_SOAK_OPERATIONS") or 10_000)
SHARES = {"add": 0.4, "get": 0.4, "bulk": 0.1, "search": 0.1}
MIX = {kind: max(1, round(OPERATIONS * share)) for kind, share in SHARES.items()}
SEED_ADDS = min(200, MIX["add"] // 2)  # first, so lookups have names to find
BULK_KNOWN, BULK_UNKNOWN = 8, 2
SAMPLE_EVERY = 0.02
ARCHIVE, DTYPE = "soak-archive", "soak-txt"


# -- counting descriptors and connections ------------------------------------------
def open_fds() -> dict[str, str]:
    """This process's open descriptors: ``{fd: what it points at}``."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the directory listing's own descriptor, already closed
            continue
    return out


TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
}


def tcp_connections(port: int, fds: dict[str, str] | None = None) -> list[str]:
    """The states of this process's TCP connections to ``port`` (any state: a
    half-closed one still holds a descriptor).

    Counted by socket inode, once each: the kernel writes ``/proc/net/tcp`` a page
    at a time, so a socket can appear twice when others open or close meanwhile.
    """
    inodes = {
        target[8:-1]
        for target in (fds if fds is not None else open_fds()).values()
        if target.startswith("socket:[")
    }
    states: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rpartition(":")[2], 16)
            if remote_port == port and fields[9] in inodes:
                states[fields[9]] = TCP_STATES.get(fields[3], fields[3])
    return list(states.values())


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes (0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (gunicorn's workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry))
    return out


class Sampler:
    """Samples descriptors and connections in a thread while the soak runs."""

    def __init__(self, port: int | None) -> None:
        self.port = port
        self.peak_fds = self.peak_connections = self.samples = 0
        self.states_at_peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            fds = open_fds()
            self.peak_fds = max(self.peak_fds, len(fds))
            if self.port is not None:
                states = tcp_connections(self.port, fds)
                if len(states) > self.peak_connections:
                    self.peak_connections = len(states)
                    self.states_at_peak = dict(Counter(states))
            self.samples += 1
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the workload ------------------------------------------------------------------
def schedule(seed: int = 6) -> list[tuple[str, int]]:
    """The operations in order, ``(kind, random number)``: SEED_ADDS adds, then the
    rest of the mix shuffled."""
    rng = random.Random(seed)
    tail = ["add"] * (MIX["add"] - SEED_ADDS)
    tail += [kind for kind, n in MIX.items() if kind != "add" for _ in range(n)]
    rng.shuffle(tail)
    return [(kind, rng.getrandbits(32)) for kind in ["add"] * SEED_ADDS + tail]


class Soak:
    """Runs the schedule on ``registry`` from THREADS threads, checking answers."""

    def __init__(self, registry: Registry, prefix: str) -> None:
        self.reg, self.prefix = registry, prefix
        self.registered: list[str] = []
        self.sha1: dict[str, str] = {}
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.adds = 0

    def _sha1(self, name: str) -> str:
        return hashlib.sha1(name.encode()).hexdigest()

    def _pick(self, rnd: int, n: int = 1) -> list[str]:
        with self.lock:
            known = len(self.registered)
            return [self.registered[(rnd + 7919 * i) % known] for i in range(n)]

    def op(self, item: tuple[int, tuple[str, int]]) -> None:
        i, (kind, rnd) = item
        start = time.perf_counter()
        if kind == "add":
            name = f"{self.prefix}-{i:05d}"
            record = self.reg.add_resource(
                name, DTYPE, ARCHIVE, sha1=self._sha1(name), metadata={"i": i}
            )
            assert record["name"] == name and record["locations"] == [ARCHIVE]
            with self.lock:
                self.registered.append(name)
        elif kind == "get":
            (name,) = self._pick(rnd)
            assert self.reg.get_resource(name)["sha1"] == self._sha1(name)
        elif kind == "bulk":
            known = set(self._pick(rnd, BULK_KNOWN))
            unknown = {f"{self.prefix}-none-{i}-{j}" for j in range(BULK_UNKNOWN)}
            found = self.reg.get_resources([*known, *unknown])
            assert set(found) == known
            assert all(r["sha1"] == self._sha1(n) for n, r in found.items())
        else:
            (name,) = self._pick(rnd)
            hits = list(self.reg.search(sha1=self._sha1(name)))
            assert [r["name"] for r in hits] == [name]
        elapsed = time.perf_counter() - start
        with self.lock:
            self.latency[kind].append(elapsed)

    def run(self) -> float:
        """Runs every operation; returns the wall time in seconds."""
        work = list(enumerate(schedule()))
        start = time.perf_counter()
        with ThreadPoolExecutor(THREADS, thread_name_prefix="soak") as pool:
            # head first, so the lookups that follow have names to choose from
            list(pool.map(self.op, work[:SEED_ADDS]))
            list(pool.map(self.op, work[SEED_ADDS:]))
        return time.perf_counter() - start

    def verify_all(self) -> None:
        """Every registration is there, with its sha1 (bulk, 500 a request)."""
        found = self.reg.get_resources(self.registered)
        assert len(self.registered) == MIX["add"]
        assert {n: r["sha1"] for n, r in found.items()} == {
            n: self._sha1(n) for n in self.registered
        }

    def latencies_ms(self) -> dict[str, dict[str, float]]:
        out = {}
        for kind, values in sorted(self.latency.items()):
            ordered = sorted(values)
            out[kind] = {
                "n": len(values),
                "p50": round(statistics.median(ordered) * 1000, 2),
                "p95": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
            }
        return out


# -- fixtures ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def soak_figures() -> Iterator[dict[str, Any]]:
    """Figures from this module's soaks, printed and written to NBANK_SOAK_REPORT."""
    figures: dict[str, Any] = {}
    yield figures
    target = os.environ.get("NBANK_SOAK_REPORT")
    if target and figures:
        Path(target).write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture(scope="module")
def soak_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DjangoRegistry, str]]:
    """A django-neurobank of its own (gunicorn gthread 2x4, MD5 hasher), so 4,000
    records do not slow other tests' searches on the shared one; on PostgreSQL if
    it is installed (under 16 clients on a busy machine, SQLite's database lock
    makes an occasional write wait past Django's 5 s and answer 500), else SQLite.
    Yields the server and its database's name."""
    with contextlib.ExitStack() as stack:
        try:
            pg = stack.enter_context(start_postgres())
        except PostgresUnavailable:
            database, options = "sqlite", {}
        else:
            database = "postgres"
            # persistent connections, as a production site would keep them
            dsn = {**pg.django_dsn, "CONN_MAX_AGE": 600}
            options = {"database": database, "postgres_dsn": dsn}
        server = stack.enter_context(
            start_django_registry(
                tmp_path_factory.mktemp("soak-registry"), page_size=100, **options
            )
        )
        with HttpRegistry(server.url, auth=server.auth) as reg:
            reg.add_datatype(DTYPE, "text/plain")
            reg.add_archive(ARCHIVE, str(tmp_path_factory.mktemp("soak-archive")))
        yield server, database


def new_fds(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    """Descriptors open after that were not open before (or point elsewhere)."""
    return {fd: target for fd, target in after.items() if before.get(fd) != target}


def _settle() -> dict[str, str]:
    gc.collect()
    return open_fds()


def soak(
    open_registry: Callable[[], Registry],
    prefix: str,
    port: int | None,
    label: str,
    figures: dict[str, Any],
    server_pids: Sequence[int] = (),
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Warms up, counts, runs the soak, closes, counts again; returns the figures
    and the descriptors before and after. CPU times (this process, and
    ``server_pids``) say how much of the wall time was work on a busy machine."""
    with open_registry() as warm:  # one-time imports and lazy state, not leaks
        warm.get_datatype(DTYPE)
    before = _settle()
    conns_before = len(tcp_connections(port, before)) if port is not None else 0
    reg = open_registry()
    try:
        runner = Soak(reg, prefix)
        cpu = time.process_time(), cpu_seconds(server_pids)
        with Sampler(port) as sampler:
            wall = runner.run()
        client_cpu = time.process_time() - cpu[0]
        server_cpu = cpu_seconds(server_pids) - cpu[1]
        runner.verify_all()
    finally:
        reg.close()
    after = _settle()
    conns_after = len(tcp_connections(port, after)) if port is not None else 0
    ops = sum(MIX.values())
    result = {
        "operations": ops,
        "mix": dict(MIX),
        "names_looked_up_in_bulk": MIX["bulk"] * (BULK_KNOWN + BULK_UNKNOWN),
        "threads": THREADS,
        "wall_s": round(wall, 2),
        "ops_per_s": round(ops / wall, 1),
        "registrations_per_s": round(MIX["add"] / wall, 1),
        "latency_ms": runner.latencies_ms(),
        "client_cpu_s": round(client_cpu, 1),
        "fds_before": len(before),
        "fds_peak": sampler.peak_fds,
        "fds_after": len(after),
        "samples": sampler.samples,
    }
    if port is not None:
        result.update(
            gunicorn_cpu_s=round(server_cpu, 1),
            pool_size=POOL_SIZE,
            connections_before=conns_before,
            connections_peak=sampler.peak_connections,
            connection_states_at_peak=sampler.states_at_peak,
            connections_after=conns_after,
        )
    figures[label] = result
    print(f"\nsoak {label}: {json.dumps(result)}")
    return result, before, after


# -- the tests ---------------------------------------------------------------------
@pytest.mark.slow
def test_http_soak_leaks_nothing(
    soak_server: tuple[DjangoRegistry, str], soak_figures: dict[str, Any], uniq: str
) -> None:
    server, database = soak_server
    port = int(server.url.split(":")[2].split("/")[0])

    def opener() -> Registry:
        return HttpRegistry(server.url, auth=server.auth)

    workers = children(server.process.pid)
    assert workers, "gunicorn has no workers"
    label = f"http ({database})"
    result, before, after = soak(opener, f"h{uniq}", port, label, soak_figures, workers)
    assert result["samples"] > 0, "the sampler did not see the run"
    assert 0 < result["connections_peak"] <= POOL_SIZE, result
    assert result["connections_after"] == result["connections_before"] == 0, result
    assert new_fds(before, after) == {}
    assert result["fds_peak"] <= result["fds_before"] + POOL_SIZE + 4, result


@pytest.mark.slow
def test_sqlite_soak_leaks_nothing(
    tmp_path: Path, soak_figures: dict[str, Any], uniq: str
) -> None:
    path = tmp_path / "registry.sqlite"
    with SqliteRegistry(path) as reg:
        reg.add_datatype(DTYPE, "text/plain")
        reg.add_archive(ARCHIVE, str(tmp_path / "archive"))

    def opener() -> Registry:
        return SqliteRegistry(path)

    result, before, after = soak(opener, f"s{uniq}", None, "sqlite", soak_figures)
    assert result["samples"] > 0, "the sampler did not see the run"
    assert new_fds(before, after) == {}
    assert not [t for t in after.values() if t.startswith(str(path))]
    # a connection per thread (file and WAL), nothing per operation
    assert result["fds_peak"] <= result["fds_before"] + 3 * THREADS + 4, result
