"""Speed of writes where labs are: session logins, Basic-only sites, the registry's
ceiling, and the requests each deposit sends.

Against real django-neurobank sites on loopback (``tests/servers.py``): a site as
Django's and DRF's defaults build it (sessions, CSRF, SessionAuthentication then
Basic, login views) and the minimal Basic-only site, each with Django's default
PBKDF2 hasher, plus a Basic-only site with the cheap MD5 hasher. Each comparison
runs its variants interleaved (A, B, A, B, ...) and reports medians. "before" is
nbank_core as it was before session logins (the parent of the commit that added
``nbank_core/registry/login.py``), run from an exported copy.

    .venv/bin/python benchmarks/bench_auth.py            # 3 rounds
    .venv/bin/python benchmarks/bench_auth.py --quick    # 1 round, fewer files
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import median as med

from bench_core import (
    COMPAT,
    DTYPE,
    NBANK,
    REPO,
    Target,
    ceiling,
    log,
    make_files,
    run,
    secs,
    verdict,
)
from servers import DjangoRegistry, Seen, recording_proxy, start_django_registry

from nbank_core import deposit, init_archive, open_registry


@dataclasses.dataclass(frozen=True)
class Sizes:
    repeats: int = 3
    few: int = 40  # files per deposit on the PBKDF2 sites
    many: int = 1000  # files per deposit on the session site, for files/s
    small: int = 300  # files per deposit against the ceiling (MD5 site)
    counted: int = 40  # files per deposit whose requests are counted


QUICK = Sizes(1, 10, 100, 50, 10)


def before_tree(root: Path) -> Path:
    """Exports nbank_core as it was before session logins into ``root``."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--",
         "nbank_core/registry/login.py"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()[-1]  # fmt: skip
    root.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", f"{added}^", "nbank_core"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    log(f"'before' is nbank_core at {added[:10]}^")
    return root


class Bench:
    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root, self.sz = root, sizes
        self.servers: dict[str, DjangoRegistry] = {}
        self.targets: dict[str, Target] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NBANK_")}
        self.env["NBANK_HOME"] = str(root / "home")
        self.before = before_tree(root / "before")
        self.n = 0

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()

    def server(self, kind: str) -> DjangoRegistry:
        """``session`` or ``basic`` (PBKDF2), ``md5`` (Basic-only, MD5 hasher)."""
        if kind not in self.servers:
            log(f"starting django-neurobank: {kind}")
            site = "session" if kind == "session" else "basic"
            hasher = "md5" if kind == "md5" else "pbkdf2"
            self.servers[kind] = start_django_registry(
                self.root / f"server-{kind}", page_size=100, hasher=hasher, site=site
            )
        return self.servers[kind]

    def target(self, kind: str, url: str | None = None) -> Target:
        """An archive registered in the ``kind`` server, reached at ``url``."""
        key = f"{kind} {url}"
        if key not in self.targets:
            srv = self.server(kind)
            url = url or srv.url
            with open_registry(url, auth=srv.auth) as reg:
                path = self.root / f"archive-{len(self.targets)}"
                cfg = init_archive(path, registry=reg)
                if DTYPE not in {d["name"] for d in reg.list_datatypes()}:
                    reg.add_datatype(DTYPE, "application/octet-stream")
            self.targets[key] = Target(url, srv.auth, cfg.path)
        return self.targets[key]

    def files(self, n: int) -> list[Path]:
        self.n += 1
        where = self.root / f"src-{self.n}"
        where.mkdir()
        return make_files(where, n, 1024)

    # -- the variants: fn(target, files) -----------------------------------------
    def ours(self, t: Target, files: list[Path]) -> None:
        run([NBANK, *t.cli_auth(), "deposit", "-d", DTYPE, t.archive, *files], self.env)

    def old(self, t: Target, files: list[Path]) -> None:
        code = (
            "import sys; from nbank_core.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        cmd = [sys.executable, "-c", code, *t.cli_auth(), "deposit", "-d", DTYPE]
        env = {**self.env, "PYTHONPATH": str(self.before)}
        proc = subprocess.run(
            [str(c) for c in [*cmd, t.archive, *files]],
            capture_output=True, text=True, env=env, cwd=self.root,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"before: exit {proc.returncode}: {proc.stderr[-500:]}")

    def compat(self, t: Target, files: list[Path]) -> None:
        cmd = [COMPAT, "-r", t.url, *t.cli_auth(), "deposit", "-d", DTYPE, t.archive]
        run([*cmd, *files], self.env)

    def api(self, t: Target, files: list[Path]) -> None:
        results = deposit(t.archive, files, dtype=DTYPE, auth=t.auth)
        if not all(r.ok for r in results):
            raise RuntimeError(next(r.error for r in results if not r.ok))

    def interleave(self, plan: list, n: int, label: str) -> dict[str, float]:
        """Runs each ``(key, kind, fn)`` once per round, in turn, on fresh files."""
        times: dict[str, list[float]] = defaultdict(list)
        for rep in range(self.sz.repeats):
            for key, kind, fn in plan:
                log(f"{label}: {key} ({rep + 1}/{self.sz.repeats})")
                t, files = self.target(kind), self.files(n)
                os.sync()
                start = time.perf_counter()
                fn(t, files)
                times[key].append(time.perf_counter() - start)
                log(f"  {times[key][-1]:.2f} s")
        return {k: med(v) for k, v in times.items()}


Table = list[tuple[str, ...]]


def bench_session(b: Bench) -> Table:
    n, many = b.sz.few, b.sz.many
    plan = [("ours", "session", b.ours)]
    if COMPAT.exists():
        plan.append(("compat", "session", b.compat))
    m = b.interleave(plan, n, f"session site, PBKDF2, {n} files")
    rows = [("session site, PBKDF2", f"{n} files, CLI", secs(m["ours"]), "", "", "")]
    if "compat" in m:
        r = m["ours"] / m["compat"]
        rows[0] = (*rows[0][:3], secs(m["compat"]), f"{r:.2f}", verdict(r=r <= 0.2))
    m = b.interleave([("ours", "session", b.ours)], many, f"session, {many} files")
    rate = f"{many / m['ours']:.1f} files/s"
    rows.append(("session site, PBKDF2", f"{many} files, CLI", secs(m["ours"]), "",
                 rate, "info"))  # fmt: skip
    return rows


def bench_basic(b: Bench) -> Table:
    rows = []
    for kind, n in (("basic", b.sz.few), ("md5", b.sz.small)):
        plan = [("ours", kind, b.ours), ("before", kind, b.old)]
        hasher = "PBKDF2" if kind == "basic" else "MD5"
        m = b.interleave(plan, n, f"Basic-only site, {hasher}, {n} files")
        r = m["ours"] / m["before"]
        rows.append((f"Basic-only site, {hasher}", f"{n} files, CLI vs before",
                     secs(m["ours"]), secs(m["before"]), f"{r:.2f}",
                     verdict(r=r <= 1.05)))  # fmt: skip
    return rows


def bench_ceiling(b: Bench) -> Table:
    n = b.sz.small
    plan = [("ours", "md5", b.api), ("ceiling", "md5", ceiling)]
    m = b.interleave(plan, n, f"{n} files vs ceiling")
    r = m["ours"] / m["ceiling"]
    return [("Basic-only site, MD5", f"{n} files, API vs bare POSTs",
             secs(m["ours"]), secs(m["ceiling"]), f"{r:.2f}",
             verdict(r=r <= 1.15))]  # fmt: skip


def counts(seen: list[Seen]) -> tuple[int, int, int, int]:
    """``(probes, login requests, writes, reads)`` among the requests seen."""
    probe = login = write = read = 0
    for s in seen:
        if s.path.startswith(("/api-auth/", "/admin/")):
            login += 1
        elif s.write and not (s.basic or s.cookie):
            probe += 1
        elif s.write:
            write += 1
        else:
            read += 1
    return probe, login, write, read


def bench_counts(b: Bench) -> Table:
    n, rows = b.sz.counted, []
    clients: list[tuple[str, Callable]] = [("ours", b.ours), ("before", b.old)]
    if COMPAT.exists():
        clients.append(("existing client 0.13.0", b.compat))
    for kind in ("session", "basic"):
        with recording_proxy(b.server(kind)) as (url, seen):
            t = b.target(kind, url)
            for name, fn in clients:
                seen.clear()
                fn(t, b.files(n))
                p, login, w, r = counts(seen)
                rows.append((kind, name, str(n), str(p), str(login), str(w), str(r)))
    return rows


def show(title: str, header: tuple[str, ...], rows: Table) -> None:
    cells = [header, *rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 round, fewer files")
    p.add_argument("--only", nargs="+", default=["session", "basic", "ceiling",
                   "counts"], help="session basic ceiling counts")  # fmt: skip
    args = p.parse_args()
    sizes = QUICK if args.quick else Sizes()
    loads = [os.getloadavg()]
    started = time.perf_counter()
    timed: Table = []
    counted: Table = []
    with tempfile.TemporaryDirectory(prefix="nbank-bench-auth-") as tmp:
        bench = Bench(Path(tmp), sizes)
        try:
            if "session" in args.only:
                timed += bench_session(bench)
            if "basic" in args.only:
                timed += bench_basic(bench)
            if "ceiling" in args.only:
                timed += bench_ceiling(bench)
            if "counts" in args.only:
                counted = bench_counts(bench)
        finally:
            bench.close()
    loads.append(os.getloadavg())
    print(f"neurobank auth benchmark: medians of {sizes.repeats} interleaved rounds; "
          f"{os.cpu_count()} CPUs, {time.perf_counter() - started:.0f} s in all; "
          f"load average (1, 5, 15 min) at the start "
          f"{'/'.join(f'{x:.2f}' for x in loads[0])}, at the end "
          f"{'/'.join(f'{x:.2f}' for x in loads[1])}")  # fmt: skip
    if timed:
        show("times", ("site", "deposit", "ours", "baseline", "ratio / rate",
                       "target"), timed)  # fmt: skip
        print("baseline: the existing client (session rows), nbank before session "
              "logins (Basic-only rows), bare concurrent POSTs (ceiling row); "
              "targets: <= 0.2x, <= 1.05x (no slower), <= 1.15x")  # fmt: skip
    if counted:
        show("requests per deposit (through a recording proxy)",
             ("site", "client", "files", "probes", "login", "writes", "reads"),
             counted)  # fmt: skip
        print("probes: anonymous POSTs asking how the API authenticates; login: "
              "GET and POST of the login form; writes: with credentials or a "
              "session; reads: GETs and anonymous bulk look-ups")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
