"""Reading many small resources by id through ``nbank://``, against reading the same
files by path, on the embedded registry (and, with ``--django``, a real
django-neurobank).

Deposits N small CSV files, then runs each scenario ROUNDS times (default 3) in one
run and reports the median, with the registry calls it made (calls to the Registry
object the filesystem holds). Before every round of a by-id scenario the shared
lookup cache is emptied, so each read asks the registry once, as a first read does.
The page cache is warm, so the by-path rows measure reading, not disk.

The rows under "what the by-id overhead is made of" time one part each, per file:
pandas's own probe for botocore (``import_optional_dependency("botocore")``, which
pandas runs for every fsspec URL and which fails when botocore is not installed),
fsspec's open of an ``nbank://`` URL with the id already resolved, and the
registry lookup alone (``Resolver.locate_many([id], fresh=True)``).

    .venv/bin/python benchmarks/bench_fsspec.py            # N = 300, embedded
    .venv/bin/python benchmarks/bench_fsspec.py -n 1000 --django
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fsspec  # noqa: E402
import pandas as pd  # noqa: E402
from nbank_fsspec import NbankFileSystem  # noqa: E402
from pandas.compat._optional import import_optional_dependency  # noqa: E402
from servers import start_django_registry  # noqa: E402

from nbank_core import DepositItem, deposit, init_archive, open_registry  # noqa: E402

COUNTED = (
    "locate_resources",
    "get_resources",
    "get_resource",
    "get_datatype",
    "search",
    "find_archive_by_root",
)


class Counter:
    """Counts the registry calls a filesystem makes (wraps its Registry's methods)."""

    def __init__(self) -> None:
        self.calls = 0

    def attach(self, fs: NbankFileSystem) -> None:
        reg = fs.registry
        for name in COUNTED:
            method = getattr(reg, name)

            @functools.wraps(method)
            def counted(*args: Any, _m: Callable = method, **kw: Any) -> Any:
                self.calls += 1
                return _m(*args, **kw)

            setattr(reg, name, counted)


def build(url: str, auth: Any, root: Path, n: int, tmp: Path) -> list[Path]:
    """An archive with N small CSV resources ``r<i>_<tag>``; returns their paths."""
    reg = open_registry(url, auth=auth, create=True)
    tag = os.urandom(4).hex()
    cfg = init_archive(root, registry=reg, name=f"bench-{tag}")
    reg.add_datatype(f"csv-{tag}", "text/csv", "csv")
    src = tmp / f"src-{tag}"
    src.mkdir()
    items = []
    for i in range(n):
        name = f"r{i:05d}_{tag}"
        (src / f"{name}.csv").write_text(f"trial,value,tag\n{i},{i / 7:.6f},{tag}\n")
        items.append(DepositItem(src / f"{name}.csv", name=name))
    results = deposit(cfg, items, dtype=f"csv-{tag}", registry=reg)
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"deposit failed: {failed[:3]}")
    reg.close()
    return [r.path for r in results]


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = " | ".join(c.ljust(width[c]) for c in cols)
    out = [line, "-+-".join("-" * width[c] for c in cols)]
    for r in rows:
        out.append(" | ".join(str(r[c]).ljust(width[c]) for c in cols))
    return "\n".join(out)


def probe_botocore() -> None:
    """What pandas does for every fsspec URL before opening it."""
    try:
        import_optional_dependency("botocore")
    except ImportError:
        pass


def run(kind: str, url: str, auth: Any, paths: list[Path], rounds: int) -> list[dict]:
    n = len(paths)
    ids = [p.stem for p in paths]
    for p in paths:  # warm the page cache
        p.read_bytes()
    opts: dict[str, Any] = {"registry": url}
    if auth:
        opts["auth"] = ":".join(auth)
    NbankFileSystem.clear_instance_cache()
    fs = fsspec.filesystem("nbank", **opts)
    counter = Counter()
    counter.attach(fs)
    resolver = fs._resolver

    def by_id_read_csv() -> None:
        for i in ids:
            pd.read_csv(f"nbank://{i}", storage_options=opts)

    def by_id_fs_open() -> None:
        for i in ids:
            with fs.open(i) as f:
                pd.read_csv(f)

    def bulk_then_read_csv() -> None:
        fs.locate(ids)
        by_id_read_csv()

    def fsspec_open_only() -> None:
        for i in ids:
            fsspec.open(f"nbank://{i}", "rb", **opts).open().close()

    scenarios: list[tuple[str, Callable[[], Any], bool]] = [
        ("by path: pd.read_csv(path)", lambda: [pd.read_csv(p) for p in paths], False),
        ("by id: pd.read_csv('nbank://id')", by_id_read_csv, True),
        ("by id: pd.read_csv(fs.open(id))", by_id_fs_open, True),
        (
            "by id: fs.locate(ids), then pd.read_csv('nbank://id')",
            bulk_then_read_csv,
            True,
        ),
        ("by id: fs.cat(ids) (bulk resolve)", lambda: fs.cat(ids), True),
        (
            "by path: open(path).read()",
            lambda: [Path(p).read_bytes() for p in paths],
            False,
        ),
        (
            "part: pandas's botocore probe alone",
            lambda: [probe_botocore() for _ in ids],
            False,
        ),
        ("part: fsspec.open('nbank://id').open(), resolved", fsspec_open_only, False),
        (
            "part: registry lookup alone (locate_many fresh)",
            lambda: [resolver.locate_many([i], fresh=True) for i in ids],
            False,
        ),
    ]
    rows = []
    for label, call, cold in scenarios:
        times, calls = [], []
        for _ in range(rounds):
            if cold:
                resolver.forget()
            else:  # the "resolved" part: every id already in the cache
                resolver.forget()
                fs.locate(ids)
            counter.calls = 0
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
            calls.append(counter.calls)
        wall = statistics.median(times)
        rows.append(
            {
                "registry": kind,
                "scenario": label,
                "registry calls": int(statistics.median(calls)),
                "median s": f"{wall:.3f}",
                "ms/file": f"{1000 * wall / n:.3f}",
                "rounds (s)": " ".join(f"{t:.3f}" for t in times),
            }
        )
        print(f"  {kind:9} {label:58} {wall:7.3f} s", file=sys.stderr)
    base = float(rows[0]["median s"])
    for r in rows:
        r["x by path"] = f"{float(r['median s']) / base:.2f}"
    NbankFileSystem.clear_instance_cache()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="resources (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median)")
    parser.add_argument("--django", action="store_true", help="also django-neurobank")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-fsspec-") as d:
        tmp = Path(d)
        url = "sqlite://" + str(tmp / "registry.sqlite")
        print(f"embedded: depositing {args.n} files", file=sys.stderr)
        paths = build(url, None, tmp / "archive", args.n, tmp)
        rows += run("embedded", url, None, paths, args.rounds)
        if args.django:
            with start_django_registry(tmp / "django", page_size=100) as server:
                print(f"django: depositing {args.n} files", file=sys.stderr)
                paths = build(server.url, server.auth, tmp / "darchive", args.n, tmp)
                rows += run("django", server.url, server.auth, paths, args.rounds)
    print(
        f"\nReading {args.n} small CSV resources (one client thread), median of "
        f"{args.rounds} rounds\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
