"""Per-job overhead of the Snakemake plugin: N jobs, each reading one input by
nbank id and depositing one output, against the same workflow on plain files.

The two workflows alternate (plain, nbank, plain, nbank, ...) on an embedded
registry and archive, each run in a fresh working directory (no ``.snakemake``)
and, for nbank, under new output ids; the table shows medians and the load
average. ``--profile FILE`` runs the nbank workflow once more under cProfile.

    .venv/bin/python benchmarks/bench_snakemake_jobs.py            # N = 150, 3 rounds
    .venv/bin/python benchmarks/bench_snakemake_jobs.py -n 50 -r 1
    .venv/bin/python benchmarks/bench_snakemake_jobs.py --profile /tmp/jobs.prof
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def one_run(root: Path, kind: str, n: int, env: dict[str, str], cores: int,
            profile: str | None = None) -> float:  # fmt: skip
    """Runs the workflow once in a fresh directory; returns its wall time."""
    tag = f"r{time.monotonic_ns()}"
    work = root / f"{kind}-{tag}"
    work.mkdir()
    if kind == "plain":
        text = PLAIN.format(n=n, root=root)
    else:
        text = NBANK.format(n=n, archive=str(root / "archive"), tag=tag)
    (work / "Snakefile").write_text(text)
    cmd = [SNAKEMAKE, "--cores", str(cores), "all"]
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", profile, *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{proc.stderr[-3000:]}")
    if kind == "plain":
        made = len(list((work / "out").iterdir()))
    else:
        archived = (root / "archive" / "resources").rglob(f"{tag}_*")
        made = sum(1 for _ in archived)
    if made != n:
        raise RuntimeError(f"{kind} run made {made} outputs, not {n}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=150, help="jobs")
    parser.add_argument("-r", "--repeats", type=int, default=3)
    parser.add_argument("-c", "--cores", type=int, default=2)
    parser.add_argument("--profile", help="write a cProfile of one more nbank run")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-snakemake-jobs-") as tmpdir:
        root = Path(tmpdir) / "jobs"
        url = "sqlite://" + str(Path(tmpdir) / "registry.sqlite")
        log(f"depositing {args.n} inputs")
        env = prepare(root, url, None, args.n)
        with open_registry(url) as reg:
            reg.add_datatype("bench-output", "text/plain")
        times: dict[str, list[float]] = {"plain": [], "nbank": []}
        for rep in range(args.repeats):
            for kind in ("plain", "nbank"):
                log(f"{kind} run {rep + 1}/{args.repeats}")
                times[kind].append(one_run(root, kind, args.n, env, args.cores))
        if args.profile:
            log("nbank run under cProfile")
            one_run(root, "nbank", args.n, env, args.cores, args.profile)
    plain, nbank = (statistics.median(times[k]) for k in ("plain", "nbank"))
    runs = {k: [round(t, 2) for t in v] for k, v in times.items()}
    print(f"{args.n} jobs, one nbank input and one deposited output each, embedded "
          f"registry, --cores {args.cores}; medians of {args.repeats} interleaved "
          "runs; load average at the start "
          f"{'/'.join(f'{x:.2f}' for x in load)}, at the end "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"{'workflow':<14}{'seconds':>9}{'ratio':>7}")
    print(f"{'plain files':<14}{plain:>9.2f}{1.0:>7.2f}")
    print(f"{'nbank':<14}{nbank:>9.2f}{nbank / plain:>7.2f}")
    print(f"  runs (s): {runs}")


if __name__ == "__main__":
    main()
