"""Speed of neurobank's core against its goals: deposit, lookup, hashing, start-up.

Runs against real servers on loopback (django-neurobank under gunicorn, started
with ``tests/servers.py``) and temporary archives under the temp directory, and
prints one table of medians. ``benchmarks/README.md`` says what each row measures.

    .venv/bin/python benchmarks/bench_core.py              # full run, 3 repeats
    .venv/bin/python benchmarks/bench_core.py --quick      # smoke run
    .venv/bin/python benchmarks/bench_core.py --only deposit hash
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median as med

import requests
from requests.adapters import HTTPAdapter

from nbank_core import Resolver, deposit, init_archive, open_registry
from nbank_core.archive import ArchiveConfig, create_archive
from nbank_core.hashing import hash_many, sha1_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from servers import DjangoRegistry, start_django_registry  # noqa: E402

NBANK = Path(sys.executable).with_name("nbank")
COMPAT = REPO / ".venv-compat" / "bin" / "nbank"
DTYPE = "bench-blob"
MiB = 1 << 20
QUOTED_BIG = {"same fs": 0.89, "across fs": 2.24}  # existing client, measured before


@dataclasses.dataclass(frozen=True)
class Sizes:
    repeats: int = 3
    small: int = 1000  # 1 KiB files per deposit
    pbkdf2: int = 50
    big: tuple[int, int] = (10, 100 * MiB)
    hash_file: int = 512 * MiB
    hash_many: tuple[int, int] = (4, 128 * MiB)
    shards: tuple[int, int] = (1000, 50_000)
    checks: int = 200
    startups: int = 20


QUICK = Sizes(1, 100, 10, (4, 16 * MiB), 64 * MiB, (4, 16 * MiB), (1000, 5000), 50, 5)


@dataclasses.dataclass
class Row:
    measurement: str
    embedded: str = "-"
    django: str = "-"
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    verdict: str = "info"


@dataclasses.dataclass(frozen=True)
class Target:
    """A registered archive, its registry and the credentials to write there."""

    url: str
    auth: tuple[str, str] | None
    archive: Path

    def cli_auth(self) -> list[str]:
        return ["-a", ":".join(self.auth)] if self.auth else []


# -- helpers -----------------------------------------------------------------------
def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def secs(t: float) -> str:
    if t >= 1:
        return f"{t:.2f} s"
    return f"{t * 1e3:.1f} ms" if t >= 1e-3 else f"{t * 1e6:.1f} us"


def verdict(**checks: bool) -> str:
    missed = [label for label, ok in checks.items() if not ok]
    return "ok" if not missed else "MISS: " + ", ".join(missed)


def run(cmd: list[object], env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-5:])
        raise RuntimeError(f"{cmd[0]} {cmd[1]} ... exited {proc.returncode}:\n{tail}")
    return proc.stdout


def write_random(path: Path, size: int, head: bytes = b"", block: bytes = b"") -> Path:
    """Writes ``size`` bytes: ``head``, then ``block`` (random if empty) repeated."""
    block = block or os.urandom(min(size, 8 * MiB))
    with open(path, "wb") as fp:
        fp.write(head)
        left = size - len(head)
        while left > 0:
            left -= fp.write(block[: min(left, len(block))])
    return path


def make_files(where: Path, n: int, size: int, block: bytes = b"") -> list[Path]:
    """``n`` files of distinct content, named by random ids (spread over shards)."""
    paths = [where / f"{secrets.token_hex(5)}.bin" for _ in range(n)]
    for p in paths:
        write_random(p, size, os.urandom(min(size, 1024)), block)
    return paths


# -- the session: temp dirs, servers, archives -------------------------------------
class Bench:
    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root, self.sz = root, sizes
        self.servers: dict[str, DjangoRegistry] = {}
        self.targets: dict[str, Target] = {}
        self.ids: dict[str, list[str]] = {}  # per backend, ids deposited by the API
        self.extra_dirs: list[Path] = []
        self.notes: list[str] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NBANK_")}
        self.env["NBANK_HOME"] = str(root / "home")

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        for d in self.extra_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def fresh_dir(self, parent: Path | None = None) -> Path:
        path = Path(tempfile.mkdtemp(prefix="nbank-bench-", dir=parent or self.root))
        if parent is not None:
            self.extra_dirs.append(path)
        return path

    def target(self, backend: str) -> Target:
        """``embedded``, ``django`` (MD5 hasher) or ``pbkdf2``: an archive with DTYPE."""
        if backend not in self.targets:
            url, auth = "sqlite://" + str(self.root / "registry.sqlite"), None
            if backend != "embedded":
                hasher = "md5" if backend == "django" else "pbkdf2"
                log(f"starting django-neurobank (hasher {hasher})")
                workdir = self.root / f"server-{hasher}"
                srv = start_django_registry(workdir, page_size=100, hasher=hasher)
                self.servers[hasher] = srv
                url, auth = srv.url, srv.auth
            with open_registry(url, auth=auth) as reg:
                cfg = init_archive(self.root / f"archive-{backend}", registry=reg)
                reg.add_datatype(DTYPE, "application/octet-stream")
            self.targets[backend] = Target(url, auth, cfg.path)
        return self.targets[backend]

    def api_deposit(self, t: Target, files: list[Path]) -> list[str]:
        results = deposit(t.archive, files, dtype=DTYPE, auth=t.auth)
        bad = [r for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"{len(bad)} deposits failed, e.g. {bad[0].error}")
        return [r.id for r in results if r.id]

    def cli_deposit(self, t: Target, files: list[Path]) -> None:
        run([NBANK, *t.cli_auth(), "deposit", "-d", DTYPE, t.archive, *files], self.env)

    def compat_deposit(self, t: Target, files: list[Path]) -> None:
        cmd = [COMPAT, "-r", t.url, *t.cli_auth(), "deposit", "-d", DTYPE, t.archive]
        run([*cmd, *files], self.env)

    def interleave(self, plan: list, label: str, make: Callable, cleanup: bool = False):
        """Runs each ``(key, backend, fn(target, files))`` of ``plan`` once per repeat,
        in turn (so drift hits every variant alike), on fresh files from ``make()``;
        ``cleanup`` deletes the archived copies after each run. Returns the medians."""
        times: dict[str, list[float]] = defaultdict(list)
        for rep in range(self.sz.repeats):
            for key, backend, fn in plan:
                log(f"{label}: {key} ({rep + 1}/{self.sz.repeats})")
                t, files = self.target(backend), make()
                os.sync()  # no writeback of the new sources during the timed part
                start = time.perf_counter()
                ids = fn(t, files)
                times[key].append(time.perf_counter() - start)
                if cleanup:
                    remove_stored(t, files)
                elif ids:
                    self.ids.setdefault(backend, ids)
        return {k: med(v) for k, v in times.items()}


def ceiling(t: Target, files: list[Path]) -> None:
    """Bare POSTs of as many registrations as deposit sends for ``files`` (random
    names and hashes, no files touched): 8 threads sharing one session."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=16))
    session.auth = t.auth

    def post(_: int) -> None:
        name, sha1 = secrets.token_hex(5), secrets.token_hex(20)
        body = dict(name=name, dtype=DTYPE, sha1=sha1, locations=[t.archive.name])
        body["metadata"] = {}
        r = session.post(t.url + "resources/", json=body, timeout=300)
        if r.status_code != 201:
            raise RuntimeError(f"POST resources/ answered {r.status_code}: {r.text}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, range(len(files))))
    session.close()


def remove_stored(t: Target, files: list[Path]) -> None:
    """Frees the disk: deletes the archived copies of ``files`` (records stay)."""
    for f in files:
        (t.archive / "resources" / f.stem[:2] / f.name).unlink(missing_ok=True)


# -- rows 1-3: deposits of small files ---------------------------------------------
def bench_deposit(b: Bench) -> list[Row]:
    n = b.sz.small
    plan = [
        ("emb-api", "embedded", b.api_deposit),
        ("emb-cli", "embedded", b.cli_deposit),
        ("dj-api", "django", b.api_deposit),
        ("dj-cli", "django", b.cli_deposit),
        ("ceiling", "django", ceiling),
    ]
    if COMPAT.exists():
        plan.append(("compat", "django", b.compat_deposit))
    else:
        b.notes.append(f"no existing client at {COMPAT}: its rows are skipped")
    m = b.interleave(plan, f"deposit {n} x 1 KiB", lambda: small_files(b, n))
    rows, ceil = [], m["ceiling"]
    for how in ("API", "CLI"):
        e, d = m[f"emb-{how.lower()}"], m[f"dj-{how.lower()}"]
        ok = verdict(emb=e < 2, ratio=d / ceil <= 1.3)
        target = "emb < 2 s; ratio <= 1.3"
        name = f"deposit {n} x 1 KiB, {how}"
        rows.append(
            Row(name, secs(e), secs(d), secs(ceil), f"{d / ceil:.2f}", target, ok)
        )
    if "compat" in m:
        c = m["compat"]
        name = "  existing client 0.13.0, CLI"
        rows.append(Row(name, "-", secs(c), secs(ceil), f"{c / ceil:.2f}"))
    return rows


def small_files(b: Bench, n: int) -> list[Path]:
    return make_files(b.fresh_dir(), n, 1024)


def bench_pbkdf2(b: Bench) -> list[Row]:
    n = b.sz.pbkdf2
    plan = [("api", "pbkdf2", b.api_deposit), ("ceiling", "pbkdf2", ceiling)]
    m = b.interleave(plan, f"deposit {n} x 1 KiB, PBKDF2", lambda: small_files(b, n))
    r = m["api"] / m["ceiling"]
    rate, ceil = f"{n / m['api']:.1f} files/s", f"{n / m['ceiling']:.1f} files/s"
    name = f"deposit {n} x 1 KiB, PBKDF2 hasher, API"
    return [
        Row(name, "-", rate, ceil, f"{r:.2f}", "ratio <= 1.3", verdict(ratio=r <= 1.3))
    ]


# -- row 4: a few big files -----------------------------------------------------------
def bench_big(b: Bench) -> list[Row]:
    count, size = b.sz.big
    block = os.urandom(8 * MiB)
    shm = Path("/dev/shm")
    sources = {"same fs": b.root, "across fs": shm}
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(b.root).st_dev:
        del sources["across fs"]
        b.notes.append("/dev/shm is missing or on the temp dir's filesystem: skipped")
    plan = [("emb", "embedded", b.api_deposit), ("dj", "django", b.api_deposit)]
    if COMPAT.exists():
        plan.append(("compat", "django", b.compat_deposit))
    rows = []
    for label, parent in sources.items():
        name = f"deposit {count} x {size // MiB} MiB, {label}"
        make = lambda p=parent: make_files(b.fresh_dir(p), count, size, block)  # noqa: E731
        m = b.interleave(plan, name, make, cleanup=True)
        if "compat" in m:
            base, ratio = secs(m["compat"]), f"{m['dj'] / m['compat']:.2f}"
        else:
            base = f"{QUOTED_BIG[label]} s (quoted)"
            ratio = f"{m['emb'] / QUOTED_BIG[label]:.2f}"
        rows.append(Row(name, secs(m["emb"]), secs(m["dj"]), base, ratio))
    return rows


# -- row 5: lookups -----------------------------------------------------------------
def ids_of(b: Bench, backend: str) -> list[str]:
    if backend not in b.ids:
        log(f"depositing {b.sz.small} files into {backend} for the lookups")
        b.ids[backend] = b.api_deposit(b.target(backend), small_files(b, b.sz.small))
    return b.ids[backend]


def answered(found: str | dict, n: int) -> bool:
    """True if a lookup's answer covers ``n`` ids (CLI output: ``n`` lines or more)."""
    if isinstance(found, str):
        return found.count("\n") >= n
    return len(found) == n and all(getattr(v, "path", 1) for v in found.values())


def bench_lookup(b: Bench) -> list[Row]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for backend in ("embedded", "django"):
        t, names = b.target(backend), ids_of(b, backend)
        with open_registry(t.url, auth=t.auth) as reg:
            n, cli = len(names), [NBANK, "-r", t.url]
            tasks = {
                "locate, API": lambda r=reg, i=names: Resolver(r).locate_many(i),
                "locate, CLI": lambda c=cli, i=names: run([*c, "locate", *i], b.env),
                "info, API": lambda r=reg, i=names: r.get_resources(i),
                "info, CLI": lambda c=cli, i=names: run([*c, "info", *i], b.env),
            }
            for key, fn in tasks.items():
                log(f"{key} {n} ids, {backend}")
                assert answered(fn(), n), f"{key}: not every id was found"
                out[key.replace(",", f" {n} ids,")][backend] = med(
                    [timed(fn) for _ in range(b.sz.repeats)]
                )
    return [Row(k, secs(v["embedded"]), secs(v["django"])) for k, v in out.items()]


# -- row 6: hashing -----------------------------------------------------------------
def raw_sha1(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324
    with open(path, "rb") as fp:
        while block := fp.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def bench_hash(b: Bench) -> list[Row]:
    size, reps = b.sz.hash_file, b.sz.repeats
    log(f"hashing one {size // MiB} MiB file")
    big = write_random(b.root / "hash.bin", size)
    assert raw_sha1(big) == sha1_file(big)  # also brings it into the page cache
    os.sync()
    ours = size / MiB / med([timed(lambda: sha1_file(big)) for _ in range(reps)])
    raw = size / MiB / med([timed(lambda: raw_sha1(big)) for _ in range(reps)])
    count, each = b.sz.hash_many
    log(f"hashing {count} x {each // MiB} MiB, parallel and sequential")
    files = make_files(b.fresh_dir(), count, each, os.urandom(8 * MiB))
    hash_many(files)
    os.sync()
    par = med([timed(lambda: hash_many(files)) for _ in range(reps)])
    seq = med([timed(lambda: [sha1_file(f) for f in files]) for _ in range(reps)])
    name = f"sha1_file, {size // MiB} MiB cached, MiB/s"
    ok = verdict(ratio=ours / raw >= 0.9)
    return [
        Row(name, f"{ours:.0f}", "-", f"{raw:.0f}", f"{ours / raw:.2f}", ">= 0.90", ok),
        Row(
            f"hash_many {count} x {each // MiB} MiB vs sequential",
            *(secs(par), "-", secs(seq), f"{seq / par:.2f}x speed-up"),
        ),
    ]


# -- row 7: "is this id taken" in a big shard -----------------------------------------
def ours_exists(cfg: ArchiveConfig, name: str) -> bool:
    """As the deposit checks a new id (transaction.py, ``_prepare``)."""
    target = cfg.resource_path(name, ".wav")
    return any(os.path.lexists(p) for p in (target, *cfg.candidate_paths(name)))


def glob_exists(cfg: ArchiveConfig, name: str) -> bool:
    """As the existing client does (``resolve_extension``)."""
    path = cfg.shard_dir(name) / name
    return path.exists() or next(path.parent.glob(f"{name}.*"), None) is not None


def bench_exists(b: Bench) -> list[Row]:
    cfg = create_archive(b.root / "archive-shards", "sqlite:///unregistered.sqlite")
    rows, ours_by_size = [], []
    for prefix, size in zip(("aa", "ab"), b.sz.shards, strict=True):
        log(f"existence check in a shard of {size} files")
        shard = cfg.shard_dir(prefix)
        shard.mkdir()
        for i in range(size):
            (shard / f"{prefix}{i:06d}.wav").touch()
        probes = [f"{prefix}new{i}" for i in range(b.sz.checks)]
        assert not any(ours_exists(cfg, p) or glob_exists(cfg, p) for p in probes[:3])
        ours = med([timed(lambda p=p: ours_exists(cfg, p)) for p in probes])
        glob = med([timed(lambda p=p: glob_exists(cfg, p)) for p in probes])
        ours_by_size.append(ours)
        name = f"exists? new id, shard of {size} files"
        rows.append(Row(name, secs(ours), "-", secs(glob), f"{ours / glob:.3f}"))
    growth = ours_by_size[1] / ours_by_size[0]
    name = f"  ours, {b.sz.shards[1]} vs {b.sz.shards[0]} files"
    ok = verdict(growth=growth <= 2)
    rows.append(Row(name, "-", "-", "-", f"{growth:.2f}", "flat: <= 2", ok))
    return rows


# -- row 8: start-up ------------------------------------------------------------------
def bench_startup(b: Bench) -> list[Row]:
    def median_run(exe: Path) -> float:
        run([exe, "--version"], b.env)  # warm the OS caches
        runs = range(b.sz.startups)
        return med([timed(lambda: run([exe, "--version"], b.env)) for _ in runs])

    log(f"nbank --version x {b.sz.startups}")
    ours = median_run(NBANK)
    name = f"nbank --version start-up ({b.sz.startups} runs)"
    row = Row(name, secs(ours), target="< 0.2 s", verdict=verdict(time=ours < 0.2))
    if COMPAT.exists():
        compat = median_run(COMPAT)
        row.baseline, row.ratio = secs(compat), f"{ours / compat:.2f}"
    return [row]


BENCHES: dict[str, Callable[[Bench], list[Row]]] = {
    "deposit": bench_deposit,
    "pbkdf2": bench_pbkdf2,
    "big": bench_big,
    "lookup": bench_lookup,
    "hash": bench_hash,
    "exists": bench_exists,
    "startup": bench_startup,
}
HEADER = Row(*"measurement embedded django-neurobank baseline/raw ratio".split(),
             "target", "verdict")  # fmt: skip
NOTES = [
    "embedded = embedded SQLite registry; django-neurobank = gunicorn (gthread, "
    "2 workers x 4 threads), SQLite, MD5 hasher except the PBKDF2 row; loopback",
    "deposit rows: baseline = bare POSTs of as many registrations (8 threads, one "
    "requests.Session, pool 16) on the same server; ratio = django / baseline",
    "big-file rows: embedded and django = ours; baseline = the existing client "
    "depositing into the same django-neurobank; ratio = ours (django) / baseline",
    "hashing: embedded = ours, baseline = hashlib over 1 MiB reads; exists?: median "
    "of single checks of a new id, embedded = ours, baseline = the existing client's glob",
]


def core_digest() -> str:
    """A digest of nbank_core's sources, to name the version measured."""
    digest = hashlib.sha1()  # noqa: S324
    for path in sorted((REPO / "nbank_core").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def print_table(rows: list[Row]) -> None:
    cells = [dataclasses.astuple(r) for r in (HEADER, *rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER.__dict__))]
    for n, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run, small and fast")
    p.add_argument("--only", nargs="+", choices=list(BENCHES), metavar="NAME",
                   help=f"run only these: {', '.join(BENCHES)}")  # fmt: skip
    args = p.parse_args()
    sizes = QUICK if args.quick else Sizes()
    rows: list[Row] = []
    started, core, load = time.perf_counter(), core_digest(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nbank-bench-") as tmp:
        bench = Bench(Path(tmp), sizes)
        try:
            for name, fn in BENCHES.items():
                if not args.only or name in args.only:
                    rows += fn(bench)
        finally:
            bench.close()
    mode = "quick" if args.quick else "full"
    print(f"neurobank core benchmark ({mode}): medians of {sizes.repeats} runs unless "
          f"said; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{time.perf_counter() - started:.0f} s in all; core {core[:12]}")  # fmt: skip
    print_table(rows)
    print("\nnotes:")
    loads = (load, os.getloadavg()[0])
    if max(loads) > (os.cpu_count() or 1):
        bench.notes.append(
            f"the machine was busy: 1-min load average {loads[0]:.1f} at the start, "
            f"{loads[1]:.1f} at the end, on {os.cpu_count()} CPUs; other processes "
            "shared them, so absolute figures are slower than on an idle machine"
        )
    if core_digest() != core:
        bench.notes.append(
            "nbank_core's sources changed during the run: rows mix versions"
        )
    for note in [*NOTES, *bench.notes]:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
