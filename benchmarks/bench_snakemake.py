"""Two Snakemake benchmarks, each against the same workflow without nbank, in one run.

1. One job writing a big output (400 MB of random bytes by default) deposited with
   ``storage.nbank(...)``, against the job writing a plain local file; and again
   with ``keep_local=True`` (Snakemake keeps its local copy, so the deposit copies,
   by a reflink where the filesystem has them, instead of linking).
2. A workflow of N trivial jobs (one per input) reading its inputs by nbank id,
   against the same workflow reading plain local files; on the embedded registry
   and on a real django-neurobank.

For 1, each run deposits under a new id into an archive on the same filesystem as
the working directory (an embedded registry); the table shows the median wall time
of the runs of the ``snakemake`` command and the ratio to the plain workflow.

Each job is ``cat {input} > {output}`` with a local output, so the difference
between the two workflows is what the storage plugin costs: the DAG's bulk
lookups, the links into ``.snakemake/storage`` and their cleanup. Each run starts
from a clean working directory (no outputs, no ``.snakemake``); the two workflows
alternate, and the table shows the median wall time of the runs.

Registry requests are counted on the client: a ``sitecustomize`` module, put on
``PYTHONPATH`` for the nbank runs only, wraps every public method of both registry
backends in every Python process of the run and adds up the calls when the process
exits. On django-neurobank, gunicorn's access log (one line per HTTP request
answered) counts them again on the server.

    .venv/bin/python benchmarks/bench_snakemake.py                # N = 500, 3 runs
    .venv/bin/python benchmarks/bench_snakemake.py -n 100 -r 1 --skip-django
    .venv/bin/python benchmarks/bench_snakemake.py --big-mb 100 --skip-inputs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from servers import start_django_registry  # noqa: E402

from nbank_core import DepositItem, deposit, init_archive, open_registry  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

SNAKEFILE = """
IDS = [f"b{{i}}" for i in range({n})]

rule all:
    input: expand("out/{{i}}.txt", i=IDS)

rule job:
    input: {input}
    output: "out/{{i}}.txt"
    shell: "cat {{input}} > {{output}}"
"""
LOCAL_INPUT = '"{root}/local/{{i}}.txt"'
NBANK_INPUT = 'storage.nbank("nbank:{i}.txt")'

SITECUSTOMIZE = """
import atexit, json, os
from nbank_core.registry.base import Registry
from nbank_core.registry.http import HttpRegistry
from nbank_core.registry.sqlite import SqliteRegistry

_COUNTS = {}
_NAMES = [n for n, v in vars(Registry).items()
          if callable(v) and not n.startswith("_") and n != "close"]

def _wrap(cls, name):
    real = getattr(cls, name)
    def counted(self, *args, **kwargs):
        _COUNTS[name] = _COUNTS.get(name, 0) + 1
        return real(self, *args, **kwargs)
    setattr(cls, name, counted)

for _cls in (HttpRegistry, SqliteRegistry):
    for _name in _NAMES:
        _wrap(_cls, _name)

@atexit.register
def _write():
    if _COUNTS:
        path = os.path.join(os.environ["NBANK_BENCH_COUNTS"], f"{os.getpid()}.json")
        with open(path, "w") as f:
            json.dump(_COUNTS, f)
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def prepare(
    root: Path, url: str, auth: tuple[str, str] | None, n: int
) -> dict[str, str]:
    """Deposits N small inputs (also kept as local files); returns the env for
    the runs."""
    (root / "local").mkdir(parents=True)
    reg = open_registry(url, auth=auth, create=True)  # a new embedded one
    try:
        cfg = init_archive(root / "archive", registry=reg, name=f"bench-{root.name}")
        reg.add_datatype("bench-input", "text/plain")
        items = []
        for i in range(n):
            path = root / "local" / f"b{i}.txt"
            path.write_text(f"input {i} of {root.name}\n")
            items.append(DepositItem(path, name=f"b{i}"))
        results = deposit(
            cfg, items, dtype="bench-input", registry=reg, keep_source=True
        )
        failed = [r.error for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} deposits failed: {failed[0]}")
    finally:
        reg.close()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NBANK_", "SNAKEMAKE_STORAGE_NBANK_"))
    }
    env.update(NBANK_REGISTRY=url, NBANK_HOME=str(root / ".nbank"))
    if auth:
        env["NBANK_AUTH"] = ":".join(auth)
    return env


def one_run(
    root: Path, kind: str, n: int, env: dict[str, str], cores: int
) -> tuple[float, dict[str, int]]:
    """Runs the workflow once in a fresh directory; returns (seconds, calls)."""
    work = root / f"run-{kind}-{time.monotonic_ns()}"
    work.mkdir()
    text = LOCAL_INPUT.format(root=root) if kind == "local" else NBANK_INPUT
    (work / "Snakefile").write_text(SNAKEFILE.format(n=n, input=text))
    env = dict(env)
    counts_dir = work / "counts"
    if kind == "nbank":
        site = work / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        counts_dir.mkdir()
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(site), env.get("PYTHONPATH")])
        )
        env["NBANK_BENCH_COUNTS"] = str(counts_dir)
    cmd = [SNAKEMAKE, "--cores", str(cores), "all"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{kind} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    made = len(list((work / "out").iterdir()))
    if made != n:
        raise RuntimeError(f"{kind} run made {made} outputs, not {n}")
    calls: dict[str, int] = {}
    for f in counts_dir.glob("*.json") if counts_dir.exists() else ():
        for name, c in json.loads(f.read_text()).items():
            calls[name] = calls.get(name, 0) + c
    return elapsed, calls


def plugin_cost(root: Path, env: dict[str, str], n: int) -> str:
    """Times the plugin's own work for N inputs in this process, without Snakemake's
    scheduling: creating the objects, one inventory, and per input the calls a
    job makes (exists, mtime, size, checksum, retrieve by link)."""
    import asyncio
    import logging

    from snakemake.io import IOCache
    from snakemake_storage_plugin_nbank import StorageProvider, StorageProviderSettings

    settings = StorageProviderSettings(
        registry=env["NBANK_REGISTRY"], auth=env.get("NBANK_AUTH")
    )
    start = time.perf_counter()
    provider = StorageProvider(
        local_prefix=root / f"plugin-{time.monotonic_ns()}",
        logger=logging.getLogger("bench"),
        settings=settings,
    )
    objs = [provider.object(f"nbank:b{i}.txt") for i in range(n)]
    made = time.perf_counter()
    asyncio.run(objs[0].inventory(IOCache(max_wait_time=20)))
    inventoried = time.perf_counter()
    for obj in objs:
        obj.exists(), obj.mtime(), obj.size(), obj.checksum()
        obj.retrieve_object()
    done = time.perf_counter()
    return (
        f"objects {1e3 * (made - start):.0f} ms, inventory "
        f"{1e3 * (inventoried - made):.0f} ms, per-input calls and links "
        f"{1e3 * (done - inventoried):.0f} ms ({provider.resolver.calls} bulk lookup)"
    )


def access_lines(path: Path | None) -> int | None:
    if path is None:
        return None
    time.sleep(0.3)  # let the workers write their last lines
    with path.open("rb") as f:
        return sum(1 for _ in f)


def bench(
    label: str,
    root: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    access: Path | None,
) -> dict:
    times: dict[str, list[float]] = {"local": [], "nbank": []}
    calls: list[dict[str, int]] = []
    served: list[int] = []
    for rep in range(args.repeats):
        for kind in ("local", "nbank"):
            log(f"{label}: {kind} run {rep + 1}/{args.repeats}")
            before = access_lines(access)
            seconds, counted = one_run(root, kind, args.n, env, args.cores)
            after = access_lines(access)
            times[kind].append(seconds)
            if kind == "nbank":
                calls.append(counted)
                if before is not None and after is not None:
                    served.append(after - before)
    local, nbank = (statistics.median(times[k]) for k in ("local", "nbank"))
    log(f"{label}: the plugin alone")
    return {
        "plugin": plugin_cost(root, env, args.n),
        "registry": label,
        "local": local,
        "nbank": nbank,
        "ratio": nbank / local,
        "calls": calls[-1],
        "served": served[-1] if served else None,
        "all_times": times,
    }


def table(rows: list[dict], n: int) -> str:
    lines = [
        f"{n} jobs, one nbank input each (median of runs; requests of the last run)",
        f"{'registry':<18}{'local s':>9}{'nbank s':>9}{'ratio':>7}"
        f"{'registry calls':>16}{'HTTP requests':>15}",
    ]
    for r in rows:
        served = "-" if r["served"] is None else str(r["served"])
        lines.append(
            f"{r['registry']:<18}{r['local']:>9.1f}{r['nbank']:>9.1f}"
            f"{r['ratio']:>7.2f}{sum(r['calls'].values()):>16}{served:>15}"
        )
    for r in rows:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(r["calls"].items()))
        runs = {k: [round(t, 1) for t in v] for k, v in r["all_times"].items()}
        lines.append(f"  {r['registry']}: calls: {detail}; runs (s): {runs}")
        lines.append(f"  {r['registry']}: plugin alone: {r['plugin']}")
    return "\n".join(lines)


BIG_PLAIN = """
rule all:
    input: "big.bin"

rule make:
    output: "big.bin"
    shell: "head -c {mb}M /dev/urandom > {{output}}"
"""
BIG_NBANK = """
storage:
    provider="nbank", archive={archive!r}, dtype="bench-output"

rule all:
    input: storage.nbank("nbank://{ident}.bin"{keep})

rule make:
    output: storage.nbank("nbank://{ident}.bin"{keep})
    shell: "head -c {mb}M /dev/urandom > {{output}}"
"""


def big_run(root: Path, kind: str, mb: int, env: dict[str, str], n: int) -> float:
    """Runs the big-output workflow once in a fresh directory; returns seconds."""
    work = root / f"big-{kind}-{n}"
    work.mkdir()
    ident = f"big_{kind}_{n}"
    if kind == "plain":
        text = BIG_PLAIN.format(mb=mb)
    else:
        keep = ", keep_local=True" if kind == "kept" else ""
        archive = str(root / "archive")
        text = BIG_NBANK.format(mb=mb, archive=archive, keep=keep, ident=ident)
    (work / "Snakefile").write_text(text)
    cmd = [SNAKEMAKE, "--cores", "1"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{kind} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    if kind == "plain":
        made = work / "big.bin"
    else:
        made = root / "archive" / "resources" / ident[:2] / f"{ident}.bin"
    if made.stat().st_size != mb * 2**20:
        raise RuntimeError(f"{kind} run made {made.stat().st_size} bytes")
    made.unlink()  # room for the next run (the record stays)
    return elapsed


def bench_big(root: Path, args: argparse.Namespace) -> str:
    """The big-output benchmark: plain, nbank (linked) and nbank with a kept local
    copy (copied), alternating; returns its table."""
    root.mkdir()
    url = "sqlite://" + str(root / "registry.sqlite")
    with open_registry(url, create=True) as reg:
        init_archive(root / "archive", registry=reg, name="bench-big")
        reg.add_datatype("bench-output", "application/octet-stream", "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NBANK_", "SNAKEMAKE_STORAGE_NBANK_"))
    }
    env.update(NBANK_REGISTRY=url, NBANK_HOME=str(root / ".nbank"))
    kinds = ("plain", "nbank", "kept")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(args.repeats):
        for kind in kinds:
            log(f"{args.big_mb} MB output: {kind} run {rep + 1}/{args.repeats}")
            times[kind].append(big_run(root, kind, args.big_mb, env, rep))
    med = {k: statistics.median(v) for k, v in times.items()}
    labels = {
        "plain": "plain local output",
        "nbank": "nbank (linked)",
        "kept": "nbank, keep_local (copied)",
    }
    lines = [
        f"one job writing {args.big_mb} MB (median of {args.repeats} runs)",
        f"{'workflow':<28}{'seconds':>9}{'ratio':>7}",
    ]
    for k in kinds:
        lines.append(f"{labels[k]:<28}{med[k]:>9.2f}{med[k] / med['plain']:>7.2f}")
    runs = {k: [round(t, 2) for t in v] for k, v in times.items()}
    lines.append(f"  runs (s): {runs}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="inputs and jobs")
    parser.add_argument("-r", "--repeats", type=int, default=3)
    parser.add_argument("-c", "--cores", type=int, default=2)
    parser.add_argument("--skip-django", action="store_true")
    parser.add_argument(
        "--big-mb", type=int, default=400, help="size of the big output (MB)"
    )
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-inputs", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-snakemake-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.skip_big:
            print(bench_big(tmp / "big", args), flush=True)
        if args.skip_inputs:
            return
        embedded = tmp / "embedded"
        log(f"embedded: depositing {args.n} inputs")
        env = prepare(
            embedded, "sqlite://" + str(tmp / "registry.sqlite"), None, args.n
        )
        rows.append(bench("embedded", embedded, env, args, None))
        if not args.skip_django:
            access = tmp / "access.log"
            os.environ["GUNICORN_CMD_ARGS"] = f"--access-logfile {access}"
            try:
                server = start_django_registry(tmp / "django", page_size=100)
            finally:
                del os.environ["GUNICORN_CMD_ARGS"]
            with server:
                root = tmp / "http"
                log(f"django-neurobank: depositing {args.n} inputs")
                env = prepare(root, server.url, server.auth, args.n)
                rows.append(bench("django-neurobank", root, env, args, access))
    print(table(rows, args.n))


if __name__ == "__main__":
    main()
