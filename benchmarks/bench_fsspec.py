"""Reading many small resources by id through ``nbank://``, against reading the same
files by path, on the embedded registry and on a real django-neurobank.

For each registry: deposit N small CSV files, then time N reads in each scenario and
count the requests it made. Requests are counted twice: calls to the Registry object
the filesystem holds (client side, both registries), and lines gunicorn wrote to its
access log (server side, django-neurobank only; ``GUNICORN_CMD_ARGS`` turns the log
on). The page cache is warmed first, so the by-path rows measure reading, not disk.

Rows: reading by path (the baseline); by id one resolve per file; by id after one
bulk resolve (``fs.locate``: 500 ids per request); ``fs.cat(ids)`` (bulk resolve,
then raw bytes); and, on django-neurobank, the same ids with their archive not
mounted, read from the registry's download endpoint.

    .venv/bin/python benchmarks/bench_fsspec.py            # N = 1000
    .venv/bin/python benchmarks/bench_fsspec.py -n 200 --skip-django
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fsspec  # noqa: E402
import pandas as pd  # noqa: E402
from fsspec_helpers import make_downloadable  # noqa: E402
from nbank_fsspec import NbankFileSystem  # noqa: E402
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


class AccessLog:
    """Lines in gunicorn's access log: one per HTTP request the server answered."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def count(self) -> int | None:
        if self.path is None:
            return None
        time.sleep(0.2)  # let the workers write their last lines
        with self.path.open("rb") as f:
            return sum(1 for _ in f)


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


def fresh_fs(url: str, counter: Counter, **options: Any) -> NbankFileSystem:
    NbankFileSystem.clear_instance_cache()
    fs = fsspec.filesystem("nbank", registry=url, **options)
    counter.attach(fs)
    return fs


@contextlib.contextmanager
def measured(
    rows: list[dict], label: str, kind: str, log: AccessLog, counter: Counter, n: int
) -> Iterator[None]:
    before = log.count()
    counter.calls = 0
    t0 = time.perf_counter()
    yield
    wall = time.perf_counter() - t0
    after = log.count()
    rows.append(
        {
            "registry": kind,
            "scenario": label,
            "registry calls": counter.calls,
            "HTTP requests": "-" if before is None else after - before,
            "wall s": f"{wall:.2f}",
            "ms/file": f"{1000 * wall / n:.2f}",
        }
    )
    print(f"  {kind:9} {label:48} {wall:7.2f} s", file=sys.stderr)


def scenarios(
    kind: str,
    url: str,
    paths: list[Path],
    log: AccessLog,
    rows: list[dict],
    download: Callable[[], Any] | None,
) -> None:
    n = len(paths)
    ids = [p.stem for p in paths]
    for p in paths:  # warm the page cache
        p.read_bytes()
    counter = Counter()
    opts = {"registry": url}
    with measured(rows, "by path: pd.read_csv(path)", kind, log, counter, n):
        for p in paths:
            pd.read_csv(p)
    fs = fresh_fs(url, counter)
    with measured(rows, "by id: pd.read_csv('nbank://id')", kind, log, counter, n):
        for i in ids:
            pd.read_csv(f"nbank://{i}", storage_options=opts)
    fs = fresh_fs(url, counter)
    with measured(rows, "by id: fs.locate(ids) alone (bulk)", kind, log, counter, n):
        fs.locate(ids)
    # the loops below may outlast the default ttl (10 s) on a slow machine: keep
    # the bulk answers for the whole loop, so the counts show the design
    long = {**opts, "ttl": 600}
    fs = fresh_fs(url, counter, ttl=600)
    with measured(
        rows, "by id: fs.locate(ids), then pd.read_csv (ttl 600)", kind, log, counter, n
    ):
        fs.locate(ids)
        for i in ids:
            pd.read_csv(f"nbank://{i}", storage_options=long)
    fs = fresh_fs(url, counter, ttl=600)
    with measured(
        rows, "by id: fs.locate(ids), then fs.open + read_csv", kind, log, counter, n
    ):
        fs.locate(ids)
        for i in ids:
            with fs.open(i) as f:
                pd.read_csv(f)
    with measured(rows, "by path: open(path).read()", kind, log, counter, n):
        for p in paths:
            with open(p, "rb") as f:
                f.read()
    fs = fresh_fs(url, counter)
    with measured(rows, "by id: fs.cat(ids) (bulk resolve)", kind, log, counter, n):
        out = fs.cat(ids)
    assert len(out) == n
    if download is not None:
        with download():
            fs = fresh_fs(url, counter)
            with measured(
                rows,
                "not mounted: fs.cat(ids) via download/",
                kind,
                log,
                counter,
                n,
            ):
                out = fs.cat(ids)
            assert len(out) == n and all(out.values())
            fs = fresh_fs(url, counter, ttl=600)
            with measured(
                rows,
                "not mounted: locate, pd.read_csv via download/ (ttl 600)",
                kind,
                log,
                counter,
                n,
            ):
                fs.locate(ids)
                for i in ids:
                    pd.read_csv(f"nbank://{i}", storage_options=long)
    NbankFileSystem.clear_instance_cache()


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = " | ".join(c.ljust(width[c]) for c in cols)
    out = [line, "-+-".join("-" * width[c] for c in cols)]
    for r in rows:
        out.append(" | ".join(str(r[c]).ljust(width[c]) for c in cols))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="resources (default 1000)")
    parser.add_argument("--skip-django", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-fsspec-") as d:
        tmp = Path(d)
        url = "sqlite://" + str(tmp / "registry.sqlite")
        print(f"embedded: depositing {args.n} files", file=sys.stderr)
        paths = build(url, None, tmp / "archive", args.n, tmp)
        scenarios("embedded", url, paths, AccessLog(None), rows, None)
        if not args.skip_django:
            access = tmp / "access.log"
            os.environ["GUNICORN_CMD_ARGS"] = f"--access-logfile {access}"
            try:
                server = start_django_registry(tmp / "django", page_size=100)
            finally:
                del os.environ["GUNICORN_CMD_ARGS"]
            with server:
                print(f"django: depositing {args.n} files", file=sys.stderr)
                root = server.workdir / "sendfile" / "archive"  # servable
                paths = build(server.url, server.auth, root, args.n, tmp)
                reg = open_registry(server.url, auth=server.auth)
                make_downloadable(server, reg.get_resource(paths[0].stem)["dtype"])
                reg.close()

                @contextlib.contextmanager
                def unmounted() -> Iterator[None]:
                    config = root / "nbank.json"
                    config.rename(root / "nbank.json.away")
                    try:
                        yield
                    finally:
                        (root / "nbank.json.away").rename(config)

                scenarios(
                    "django", server.url, paths, AccessLog(access), rows, unmounted
                )
    print(f"\nReading {args.n} small CSV resources (one client thread)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
