"""Per-job overhead of the Snakemake plugin: N jobs, each reading one input by
nbank id and depositing one output, against the same workflow on plain files.

A third workflow, "link-only", runs the same jobs through a storage plugin that
does the least any archive plugin must (``floor/``: inputs symlinked, outputs
hard-linked, one ``stat`` per question): it shows what Snakemake's own storage
machinery costs per job, apart from nbank.

The workflows alternate (plain, link-only, nbank, plain, ...) on an embedded
registry and archive, each run in a fresh working directory (no ``.snakemake``)
and under new output names; the table shows medians of the wall time and of the
CPU time (user + system, Snakemake and its jobs), and the load average.
The project's modules are compiled to bytecode first, as an installed package
has them. ``--profile FILE`` runs each workflow once more under cProfile, writing
``FILE.plain``, ``FILE.floor`` and ``FILE.nbank``.

    .venv/bin/python benchmarks/bench_snakemake_jobs.py            # N = 150, 3 rounds
    .venv/bin/python benchmarks/bench_snakemake_jobs.py -n 50 -r 1
    .venv/bin/python benchmarks/bench_snakemake_jobs.py --profile /tmp/jobs.prof
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_core import REPO
from bench_snakemake import SNAKEMAKE, log, prepare

from nbank_core import open_registry

PLAIN = """
IDS = [f"b{{i}}" for i in range({n})]

rule all:
    input: expand("out/{{i}}.txt", i=IDS)

rule job:
    input: "{root}/local/{{i}}.txt"
    output: "out/{{i}}.txt"
    shell: "cat {{input}} > {{output}}"
"""
NBANK = """
storage:
    provider="nbank", archive={archive!r}, dtype="bench-output"

IDS = [f"b{{i}}" for i in range({n})]

rule all:
    input: [storage.nbank(f"nbank://{tag}_{{i}}.txt") for i in IDS]

rule job:
    input: storage.nbank("nbank:{{i}}.txt")
    output: storage.nbank("nbank://{tag}_{{i}}.txt")
    shell: "cat {{input}} > {{output}}"
"""
FLOOR = """
storage:
    provider="linkfloor"

IDS = [f"b{{i}}" for i in range({n})]

rule all:
    input: [storage.linkfloor(f"linkfloor:out/{tag}_{{i}}.txt") for i in IDS]

rule job:
    input: storage.linkfloor("linkfloor:local/{{i}}.txt")
    output: storage.linkfloor("linkfloor:out/{tag}_{{i}}.txt")
    shell: "cat {{input}} > {{output}}"
"""
KINDS = ("plain", "floor", "nbank")
LABELS = {"plain": "plain files", "floor": "link-only", "nbank": "nbank"}


def one_run(root: Path, kind: str, n: int, env: dict[str, str], cores: int,
            profile: str | None = None) -> tuple[float, float]:  # fmt: skip
    """Runs the workflow once in a fresh directory; returns its wall time and the
    CPU time (user + system) of Snakemake and its jobs."""
    tag = f"r{time.monotonic_ns()}"
    work = root / f"{kind}-{tag}"
    work.mkdir()
    if kind == "plain":
        text = PLAIN.format(n=n, root=root)
    elif kind == "floor":
        text = FLOOR.format(n=n, tag=tag)
        env = {**env, "LINKFLOOR_ROOT": str(root)}
        env["PYTHONPATH"] = os.pathsep.join(
            p
            for p in (str(Path(__file__).parent / "floor"), env.get("PYTHONPATH"))
            if p
        )
    else:
        text = NBANK.format(n=n, archive=str(root / "archive"), tag=tag)
    (work / "Snakefile").write_text(text)
    cmd = [SNAKEMAKE, "--cores", str(cores), "all"]
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", profile, *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{proc.stderr[-3000:]}")
    if kind == "plain":
        made = len(list((work / "out").iterdir()))
    elif kind == "floor":
        made = sum(1 for _ in (root / "out").glob(f"{tag}_*"))
    else:
        archived = (root / "archive" / "resources").rglob(f"{tag}_*")
        made = sum(1 for _ in archived)
    if made != n:
        raise RuntimeError(f"{kind} run made {made} outputs, not {n}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=150, help="jobs")
    parser.add_argument("-r", "--repeats", type=int, default=3)
    parser.add_argument("-c", "--cores", type=int, default=2)
    parser.add_argument("--profile", help="write cProfiles of one more run of each")
    args = parser.parse_args()
    # bytecode, as an installed package has it: the runs then measure the jobs,
    # not compiling the project's modules again in every run
    for tree in ("nbank_core", "integrations", "benchmarks/floor"):
        compileall.compile_dir(REPO / tree, quiet=1)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-snakemake-jobs-") as tmpdir:
        root = Path(tmpdir) / "jobs"
        url = "sqlite://" + str(Path(tmpdir) / "registry.sqlite")
        log(f"depositing {args.n} inputs")
        env = prepare(root, url, None, args.n)
        with open_registry(url) as reg:
            reg.add_datatype("bench-output", "text/plain")
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        cpus: dict[str, list[float]] = {k: [] for k in KINDS}
        for rep in range(args.repeats):
            for kind in KINDS:
                log(f"{kind} run {rep + 1}/{args.repeats}")
                wall, cpu = one_run(root, kind, args.n, env, args.cores)
                times[kind].append(wall)
                cpus[kind].append(cpu)
        if args.profile:
            for kind in KINDS:
                log(f"{kind} run under cProfile")
                one_run(root, kind, args.n, env, args.cores, f"{args.profile}.{kind}")
    wall = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    runs = {k: [round(t, 2) for t in v] for k, v in times.items()}
    print(f"{args.n} jobs, one input and one output each, embedded registry, "
          f"--cores {args.cores}; medians of {args.repeats} interleaved runs; "
          "load average at the start "
          f"{'/'.join(f'{x:.2f}' for x in load)}, at the end "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"{'workflow':<14}{'seconds':>9}{'ratio':>7}{'CPU s':>8}{'ratio':>7}")
    for k in KINDS:
        print(f"{LABELS[k]:<14}{wall[k]:>9.2f}{wall[k] / wall['plain']:>7.2f}"
              f"{cpu[k]:>8.2f}{cpu[k] / cpu['plain']:>7.2f}")  # fmt: skip
    print(f"  runs (s): {runs}")


if __name__ == "__main__":
    main()
