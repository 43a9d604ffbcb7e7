"""Scheduling N already-complete luigi tasks: registry requests and wall time.

For each registry (the embedded one, and a django-neurobank under gunicorn on
loopback), N resources are deposited, then luigi's local scheduler is asked for
the N tasks that made them, as a list of tasks and as one wrapper task, with
nbank_luigi's bulk lookup on and off. Every task must be found complete (none
runs). A baseline with targets that need no registry shows luigi's own cost.

    .venv/bin/python benchmarks/bench_luigi.py [--n 1000] [--backends sqlite,http]

Registry calls are calls of the Registry's methods (and the time spent in
them); HTTP requests are what the HTTP backend sent (a bulk call sends one
request per 500 ids). Wall time is the whole ``luigi.build``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

with warnings.catch_warnings():  # luigi warns unless [core] autoload_range is set
    warnings.filterwarnings("ignore", r"\s*Autoloading range", DeprecationWarning)
    import luigi
    import luigi.configuration
    import nbank_luigi
    from luigi.execution_summary import LuigiStatusCode
    from luigi.task_register import Register

    from nbank_core import DepositItem, deposit, init_archive
    from nbank_core.registry import Registry, open_registry
    from nbank_core.registry.http import HttpRegistry
    from nbank_core.registry.sqlite import SqliteRegistry

RUNS: list[str] = []


class BenchItem(nbank_luigi.NbankTask):
    """Output ``<prefix><i>``; never expected to run."""

    prefix = luigi.Parameter()
    i = luigi.IntParameter()

    def output(self):
        return nbank_luigi.NbankTarget(f"{self.prefix}{self.i}")

    def run(self):
        RUNS.append(self.task_id)
        raise RuntimeError("the benchmark's tasks are all complete")


class BenchAll(luigi.WrapperTask):
    prefix = luigi.Parameter()
    n = luigi.IntParameter()

    def requires(self):
        return [BenchItem(prefix=self.prefix, i=i) for i in range(self.n)]


class Done(luigi.Target):
    def exists(self) -> bool:
        return True


class BaselineItem(luigi.Task):
    """A complete task whose target asks nobody: luigi's own cost."""

    i = luigi.IntParameter()

    def output(self):
        return Done()


class BaselineAll(luigi.WrapperTask):
    n = luigi.IntParameter()

    def requires(self):
        return [BaselineItem(i=i) for i in range(self.n)]


# -- counting --------------------------------------------------------------------
_METHODS = (
    "get_resource",
    "get_resources",
    "locate_resources",
    "get_datatype",
    "list_archives",
    "search",
)


@contextlib.contextmanager
def counting() -> Iterator[collections.Counter]:
    counts: collections.Counter = collections.Counter()
    saved: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, key: str) -> None:
        original = cls.__dict__[name]

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                counts[f"{key} s"] += time.perf_counter() - start

        saved.append((cls, name, original))
        setattr(cls, name, wrapper)

    for cls in (HttpRegistry, SqliteRegistry):
        for name in _METHODS:
            wrap(cls, name, "calls")
    wrap(HttpRegistry, "_request", "http")
    try:
        yield counts
    finally:
        for cls, name, original in reversed(saved):
            setattr(cls, name, original)


# -- the runs --------------------------------------------------------------------
def configure(url: str, archive: Path, prefetch: bool) -> None:
    config = luigi.configuration.get_config()
    config.set("nbank", "registry", url)
    config.set("nbank", "archive", str(archive))
    config.set("nbank", "prefetch", "true" if prefetch else "false")
    Register.clear_instance_cache()
    nbank_luigi.clear_cache()


def schedule(make_tasks) -> tuple[float, collections.Counter]:
    with counting() as counts:
        start = time.perf_counter()
        result = luigi.build(
            make_tasks(), local_scheduler=True, detailed_summary=True, log_level="ERROR"
        )
        elapsed = time.perf_counter() - start
    if result.status != LuigiStatusCode.SUCCESS or RUNS:
        raise SystemExit(f"scheduling failed or ran tasks:\n{result.summary_text}")
    return elapsed, counts


def prepare(registry: Registry, url: str, workdir: Path, n: int, prefix: str) -> Path:
    cfg = init_archive(workdir / f"archive-{prefix}", registry=registry)
    registry.add_datatype(f"bench-{prefix}", "text/plain")
    src = workdir / f"src-{prefix}"
    src.mkdir()
    items = []
    for i in range(n):
        path = src / f"{prefix}{i}"
        path.write_text(f"benchmark resource {prefix}{i}\n")
        items.append(DepositItem(path))
    results = deposit(cfg, items, dtype=f"bench-{prefix}", registry=registry)
    if not all(r.ok for r in results):
        raise SystemExit(
            f"deposit failed: {[r.error for r in results if not r.ok][:3]}"
        )
    return cfg.path


def bench_backend(
    kind: str, url: str, auth: Any, workdir: Path, n: int
) -> list[tuple[str, ...]]:
    prefix = f"b{kind}"
    # an embedded registry is made here: a read never creates one
    registry = open_registry(url, auth=auth, create=kind == "sqlite")
    archive = prepare(registry, url, workdir, n, prefix)
    rows = []
    for shape in ("list", "wrapper"):
        for prefetch in (True, False):
            configure(url, archive, prefetch)
            if shape == "list":
                tasks = [BenchItem(prefix=prefix, i=i) for i in range(n)]
                elapsed, counts = schedule(lambda tasks=tasks: tasks)
            else:
                elapsed, counts = schedule(lambda: [BenchAll(prefix=prefix, n=n)])
            http = str(counts["http"]) if kind == "http" else "-"
            mode = "bulk lookup" if prefetch else "one per task"
            rows.append(
                (
                    kind,
                    shape,
                    mode,
                    str(counts["calls"]),
                    http,
                    f"{elapsed:.2f}",
                    f"{counts['calls s']:.2f}",
                )
            )
    registry.close()
    return rows


def baseline(n: int) -> list[tuple[str, ...]]:
    Register.clear_instance_cache()
    rows = []
    tasks = [BaselineItem(i=i) for i in range(n)]
    elapsed, _ = schedule(lambda: tasks)
    rows.append(("none", "list", "luigi only", "0", "-", f"{elapsed:.2f}", "0"))
    Register.clear_instance_cache()
    elapsed, _ = schedule(lambda: [BaselineAll(n=n)])
    rows.append(("none", "wrapper", "luigi only", "0", "-", f"{elapsed:.2f}", "0"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="tasks (default 1000)")
    parser.add_argument("--backends", default="sqlite,http")
    args = parser.parse_args(argv)
    config = luigi.configuration.get_config()
    config.set("core", "autoload_range", "false")
    rows: list[tuple[str, ...]] = [
        (
            "registry",
            "tasks as",
            "existence checks",
            "registry calls",
            "HTTP",
            "wall s",
            "in registry s",
        )
    ]
    rows += baseline(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in args.backends.split(","):
            if kind == "sqlite":
                url = "sqlite://" + str(workdir / "registry.sqlite")
                rows += bench_backend(kind, url, None, workdir, args.n)
            elif kind == "http":
                from servers import start_django_registry

                with start_django_registry(workdir / "django", page_size=100) as srv:
                    rows += bench_backend("http", srv.url, srv.auth, workdir, args.n)
            else:
                raise SystemExit(f"unknown backend {kind!r}: sqlite or http")
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    print(f"scheduling {args.n} complete tasks (luigi local scheduler)")
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
