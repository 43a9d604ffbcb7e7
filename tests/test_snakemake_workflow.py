"""The real ``snakemake`` command with the nbank plugin, on both registries: the
example workflow, a rerun, a failing rule, a cluster run, settings as flags and
environment variables, and examples/snakemake/run.sh."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from snakemake_helpers import (
    EXAMPLE,
    SNAKEMAKE,
    archived_files,
    clean_env,
    deposit_stimuli,
    nbank,
    run,
    snakemake,
    staging_is_empty,
)

from nbank_core import DepositItem, Registry, deposit, open_registry, sha1_file
from nbank_core.config import registry_mismatch

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Example:
    """The example workflow's inputs, deposited in a test archive."""

    workdir: Path
    env: dict[str, str]
    archive: object
    stimuli: list[str]
    summary_dtype: str
    config: list[str]


@pytest.fixture
def example(backend, archive, uniq: str, tmp_path: Path) -> Example:
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = clean_env(workdir, backend.env)
    wav, summary = f"wav-{uniq}", f"summary-{uniq}"
    archive.registry.add_datatype(wav, "audio/wav", ".wav")
    archive.registry.add_datatype(summary, "application/json", ".json")
    prefix = f"x{uniq}_"
    stimuli = deposit_stimuli(workdir, archive.path, prefix, wav, env)
    config = [
        "--config",
        f"archive={archive.path}",
        f"summary_dtype={summary}",
        f"prefix={prefix}",
    ]
    return Example(workdir, env, archive, stimuli, summary, config)


def test_example_workflow_and_rerun(example: Example) -> None:
    reg = example.archive.registry
    before = {
        s: sha1_file(archived_files(example.archive.path, s)[0])
        for s in example.stimuli
    }
    snakemake(
        example.workdir, "-s", str(EXAMPLE / "Snakefile"), *example.config,
        env=example.env,
    )  # fmt: skip
    summaries = [f"{s}_summary" for s in example.stimuli]
    records = reg.get_resources(summaries)
    assert sorted(records) == sorted(summaries)
    for stimulus in example.stimuli:
        record = records[f"{stimulus}_summary"]
        assert record["dtype"] == example.summary_dtype
        meta = record["metadata"]
        assert meta["engine"] == "snakemake"
        assert meta["step"] == "summarize"
        assert meta["inputs"] == [stimulus]
        assert meta["parameters"] == {"stimulus": stimulus}
        assert meta["engine_version"].startswith("9.")
        (path,) = archived_files(example.archive.path, f"{stimulus}_summary")
        assert path.suffix == ".json"
        assert json.loads(path.read_text())["stimulus"] == stimulus
        assert record["metadata"]["content_sha1"] == sha1_file(path)  # derived
    table = (example.workdir / "results" / "stimuli.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in table[1:]] == example.stimuli
    # the inputs were linked, never copied, moved or changed
    for stimulus, digest in before.items():
        (path,) = archived_files(example.archive.path, stimulus)
        assert sha1_file(path) == digest
    prefix = example.workdir / ".snakemake" / "storage" / "nbank"
    assert not [p for p in prefix.rglob("*") if p.is_file() and not p.is_symlink()]
    assert staging_is_empty(example.archive.path)

    again = snakemake(
        example.workdir, "-s", str(EXAMPLE / "Snakefile"), *example.config,
        env=example.env,
    )  # fmt: skip
    assert "Nothing to be done" in again.stdout + again.stderr
    assert reg.get_resources(summaries) == records


SNAKEFILE_FAILING = """
storage:
    provider="nbank", archive={archive!r}, dtype={dtype!r}

rule all:
    input: storage.nbank("nbank://{name}.txt")

rule broken:
    output: storage.nbank("nbank://{{name}}.txt")
    shell: "echo partial > {{output}}; exit 3"
"""


def test_failing_rule_deposits_nothing(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    name = f"broken_{uniq}"
    (tmp_path / "Snakefile").write_text(
        SNAKEFILE_FAILING.format(
            archive=str(archive.path), dtype=archive.dtype, name=name
        )
    )
    env = clean_env(tmp_path, backend.env)
    proc = snakemake(tmp_path, env=env, check=False)
    assert proc.returncode != 0
    assert "Error in rule broken" in proc.stdout + proc.stderr
    assert archive.registry.get_resources([name]) == {}
    assert archived_files(archive.path, name) == []
    assert staging_is_empty(archive.path)


SNAKEFILE_FLAGS = """
# no storage directive: every setting comes from flags or the environment
STIMULI = config["stimuli"].split()

rule all:
    input: storage.nbank(expand("nbank://{s}_size.txt", s=STIMULI))

rule size:
    input: storage.nbank("nbank:{s}.wav")
    output: storage.nbank("nbank://{s}_size.txt")
    shell: "echo {wildcards.s} $(wc -c < {input}) > {output}"
"""


def test_cluster_generic_deposits_each_output_once(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    """Remote jobs on a shared filesystem: each output is stored by its job and
    again by the main process, and deposited exactly once. Settings reach the
    remote jobs as flags and SNAKEMAKE_STORAGE_NBANK_* variables."""
    wav = f"wav-{uniq}"
    archive.registry.add_datatype(wav, "audio/wav", ".wav")
    (tmp_path / "Snakefile").write_text(SNAKEFILE_FLAGS)
    env = clean_env(tmp_path, backend.env)
    stimuli = deposit_stimuli(tmp_path, archive.path, f"c{uniq}_", wav, env)[:2]
    for key in ("REGISTRY", "AUTH"):  # the plugin's own variables, not nbank's
        if f"NBANK_{key}" in env:
            env[f"SNAKEMAKE_STORAGE_NBANK_{key}"] = env.pop(f"NBANK_{key}")
    proc = snakemake(
        tmp_path,
        "--executor", "cluster-generic",
        "--cluster-generic-submit-cmd", "bash",
        "--jobs", "2",
        "--storage-nbank-archive", str(archive.path),
        "--storage-nbank-dtype", archive.dtype,
        "--storage-nbank-metadata", '{"project": "cluster test"}',
        "--config", f"stimuli={' '.join(stimuli)}",
        env=env,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    for s in stimuli:
        name = f"{s}_size"
        assert log.count(f"Storing in storage: nbank:/{name}.txt") == 2
        records = list(archive.registry.search(name=name))
        assert [r["name"] for r in records] == [name]
        assert records[0]["metadata"]["project"] == "cluster test"
        assert records[0]["metadata"]["step"] == "size"
        assert records[0]["metadata"]["inputs"] == [s]
        assert records[0]["metadata"]["parameters"] == {"s": s}
        (path,) = archived_files(archive.path, name)
        assert path.read_text().split()[0] == s
    assert staging_is_empty(archive.path)


def test_invalid_id_is_rejected_before_running(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: storage.nbank("nbank://not/an id")\n'
    )
    proc = snakemake(tmp_path, env=clean_env(tmp_path), check=False)
    assert proc.returncode != 0
    assert "ids may only contain letters, digits" in proc.stdout + proc.stderr


def test_snakemake_discovers_the_plugin(tmp_path: Path) -> None:
    """Discovery through the command itself: its help lists the plugin's flags."""
    out = run([SNAKEMAKE, "--help"], tmp_path, clean_env(tmp_path)).stdout
    for flag in ("archive", "dtype", "registry", "auth", "allow-remove"):
        assert f"--storage-nbank-{flag}" in out
    assert "SNAKEMAKE_STORAGE_NBANK_REGISTRY" in out


def test_run_sh_on_an_empty_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = clean_env(tmp_path)
    first = run(["bash", str(EXAMPLE / "run.sh"), str(work)], tmp_path, env)
    for f in (220, 440, 880):
        assert f"tone_{f}_summary\n" in first.stdout
        assert f"resources/to/tone_{f}_summary.json" in first.stdout
    assert (work / ".nbank" / "registry.sqlite").is_file()
    assert not (tmp_path / ".nbank").exists()  # run.sh set its own NBANK_HOME
    second = run(["bash", str(EXAMPLE / "run.sh"), str(work)], tmp_path, env)
    assert "Nothing to be done" in second.stdout + second.stderr
    listed = nbank(
        work,
        "search",
        "-d",
        "stimulus-summary",
        env={**env, "NBANK_REGISTRY": f"sqlite://{work}/.nbank/registry.sqlite"},
    )
    assert listed.stdout.split() == [f"tone_{f}_summary" for f in (220, 440, 880)]


SNAKEFILE_ARCHIVE = """
storage:
    provider="nbank", archive={archive!r}, dtype={dtype!r}

rule all:
    input: storage.nbank("nbank://{name}.txt")

rule copy:
    input: storage.nbank("nbank:{source}.txt")
    output: storage.nbank("nbank://{{name}}.txt")
    shell: "touch {marker}; cat {{input}} > {{output}}; echo copied >> {{output}}"
"""


@pytest.fixture
def other_registry(tmp_path: Path) -> Iterator[Registry]:
    """An existing embedded registry that is not the archive's."""
    url = "sqlite://" + str(tmp_path / "other" / "registry.sqlite")
    (tmp_path / "other").mkdir()
    with open_registry(url, create=True) as reg:
        yield reg


def archive_workflow(archive, uniq: str, tmp_path: Path) -> tuple[str, str, Path]:
    """A Snakefile that copies an input of ``archive`` into a new output; returns
    the ids of the input and the output, and the file the job touches."""
    source, name = f"src_{uniq}", f"copy_{uniq}"
    (tmp_path / f"{source}.txt").write_text(f"input {uniq}\n")
    (result,) = deposit(
        archive.cfg,
        [DepositItem(tmp_path / f"{source}.txt", name=source)],
        dtype=archive.dtype,
        registry=archive.registry,
    )
    assert result.ok, result.error
    marker = tmp_path / "job-ran"
    (tmp_path / "Snakefile").write_text(
        SNAKEFILE_ARCHIVE.format(
            archive=str(archive.path),
            dtype=archive.dtype,
            name=name,
            source=source,
            marker=marker,
        )
    )
    return source, name, marker


def test_nbank_registry_never_redirects_deposits(
    backend, archive, other_registry: Registry, uniq: str, tmp_path: Path
) -> None:
    """With NBANK_REGISTRY naming another existing registry, the workflow reads and
    deposits through the archive's registry, never the other one."""
    source, name, marker = archive_workflow(archive, uniq, tmp_path)
    env = clean_env(tmp_path, {**backend.env, "NBANK_REGISTRY": other_registry.url})
    snakemake(tmp_path, env=env)
    assert marker.exists()
    record = archive.registry.get_resource(name)
    assert record["metadata"]["inputs"] == [source]
    assert record["metadata"]["step"] == "copy"
    (path,) = archived_files(archive.path, name)
    assert path.read_text() == f"input {uniq}\ncopied\n"
    assert record["metadata"]["content_sha1"] == sha1_file(path)
    assert other_registry.get_resources([name, source]) == {}
    assert list(other_registry.search(name=name)) == []


def test_explicit_other_registry_stops_before_any_job(
    backend, archive, other_registry: Registry, uniq: str, tmp_path: Path
) -> None:
    """An explicit registry setting that is not the archive's is nbank's one-line
    mismatch error, at start-up: no job runs, nothing is deposited anywhere."""
    _, name, marker = archive_workflow(archive, uniq, tmp_path)
    env = clean_env(tmp_path, backend.env)
    proc = snakemake(
        tmp_path, "--storage-nbank-registry", other_registry.url, env=env, check=False
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    expected = registry_mismatch(archive.path, archive.cfg.registry, other_registry.url)
    assert "\n" not in expected
    assert log.count(expected) == 1, log
    assert not marker.exists()
    assert "rule copy" not in log
    assert archive.registry.get_resources([name]) == {}
    assert other_registry.get_resources([name]) == {}
