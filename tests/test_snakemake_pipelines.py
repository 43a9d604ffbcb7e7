"""Workflows as their users run them, with the real ``snakemake`` command: identical
outputs, datatypes from extensions, reruns, jobs with several outputs, ``temp()``
with the plugin as default storage, ``--touch``, ``--delete-all-output``,
``--cleanup-metadata``, inputs of an archive not mounted here, and outputs staged
by a link."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from snakemake_helpers import (
    SNAKEMAKE,
    archived_files,
    clean_env,
    run,
    snakemake,
    staging_is_empty,
)

from nbank_core import (
    ConfigError,
    DepositItem,
    deposit,
    dtype_for_suffix,
    init_archive,
    sha1_file,
    verify,
)

pytestmark = pytest.mark.slow

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
EMPTY_SHA1 = hashlib.sha1(b"").hexdigest()


def setup(tmp_path: Path, backend, text: str, **fields: object) -> dict[str, str]:
    """Writes the Snakefile ``text`` (formatted with ``fields``) in ``tmp_path``;
    returns the environment of the commands."""
    (tmp_path / "Snakefile").write_text(text.format(**fields))
    return clean_env(tmp_path, backend.env)


def log_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def deposit_one(archive, path: Path, name: str, text: str, derived: bool) -> None:
    """Deposits ``text`` under ``name`` with the core, as a source or as a
    derived output (as the plugin deposits)."""
    path.write_text(text)
    (result,) = deposit(
        archive.cfg,
        [DepositItem(path, name=name)],
        dtype=archive.dtype,
        registry=archive.registry,
        derived=derived,
    )
    assert result.ok, result.error


# -- 1: identical outputs ------------------------------------------------------------
SNAKEFILE_IDENTICAL = """
storage:
    provider="nbank", archive={archive!r}, dtype={dtype!r}

rule all:
    input: storage.nbank(expand("nbank://{prefix}_{{n}}.txt", n=range(3)))

rule empty:
    output: storage.nbank("nbank://{prefix}_{{n}}.txt")
    shell: "printf '' > {{output}}"
"""


def test_identical_outputs_are_all_deposited(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    """Three empty outputs: each is deposited under its id, its hash in the
    metadata, and verify finds every one of them by content."""
    prefix = f"empty_{uniq}"
    env = setup(
        tmp_path, backend, SNAKEFILE_IDENTICAL,
        archive=str(archive.path), dtype=archive.dtype, prefix=prefix,
    )  # fmt: skip
    snakemake(tmp_path, env=env)
    names = [f"{prefix}_{n}" for n in range(3)]
    records = archive.registry.get_resources(names)
    assert sorted(records) == names
    for name in names:
        assert records[name]["sha1"] is None
        assert records[name]["metadata"]["content_sha1"] == EMPTY_SHA1
        (path,) = archived_files(archive.path, name)
        assert path.stat().st_size == 0
    assert verify(path, registry=archive.registry)[0]["name"] == name
    probe = tmp_path / f"probe_{uniq}.txt"  # not named like a resource
    shutil.copyfile(path, probe)
    found = verify(probe, registry=archive.registry)
    assert {r["name"] for r in found} >= set(names)
    again = snakemake(tmp_path, env=env)
    assert "Nothing to be done" in log_of(again)


# -- 2: the datatype from the extension, before any job runs ----------------------
SNAKEFILE_NO_DTYPE = """
storage:
    provider="nbank", archive={archive!r}

rule all:
    input: "local_{name}.txt", storage.nbank(expand("nbank://{name}_{{n}}.{ext}", n=(1, 2)))

rule local:
    output: "local_{name}.txt"
    shell: "touch {marker}; echo local > {{output}}"

rule make:
    output: storage.nbank("nbank://{name}_{{n}}.{ext}")
    shell: "touch {marker}; echo {{wildcards.n}} > {{output}}"
"""


@SQLITE_ONLY
def test_dtype_from_the_extension(backend, archive, uniq: str, tmp_path: Path) -> None:
    ext, dtype = f"e{uniq[:7]}", f"ext-{uniq}"  # at most 8 characters
    archive.registry.add_datatype(dtype, "text/plain", ext)
    name, marker = f"typed_{uniq}", tmp_path / "ran"
    env = setup(
        tmp_path, backend, SNAKEFILE_NO_DTYPE,
        archive=str(archive.path), name=name, ext=ext, marker=marker,
    )  # fmt: skip
    snakemake(tmp_path, env=env)
    records = archive.registry.get_resources([f"{name}_1", f"{name}_2"])
    assert {r["dtype"] for r in records.values()} == {dtype}
    assert [p.name for p in archived_files(archive.path, f"{name}_1")] == [
        f"{name}_1.{ext}"
    ]


@SQLITE_ONLY
def test_no_dtype_stops_before_any_job(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    """No datatype has the extension: the core's message, and no job ran (not even
    the one without nbank outputs)."""
    ext, name, marker = f"z{uniq[:7]}", f"untyped_{uniq}", tmp_path / "ran"
    env = setup(
        tmp_path, backend, SNAKEFILE_NO_DTYPE,
        archive=str(archive.path), name=name, ext=ext, marker=marker,
    )  # fmt: skip
    proc = snakemake(tmp_path, env=env, check=False)
    with pytest.raises(ConfigError) as info:
        dtype_for_suffix(f".{ext}", registry=archive.registry)
    assert proc.returncode != 0
    assert str(info.value) in log_of(proc)
    assert not marker.exists()
    assert "localrule" not in log_of(proc)
    assert archive.registry.get_resources([f"{name}_1", f"{name}_2"]) == {}


# -- 3: reruns -------------------------------------------------------------------------
SNAKEFILE_RERUN = """
storage:
    provider="nbank", archive={archive!r}, dtype={dtype!r}

rule all:
    input: storage.nbank("nbank://{name}.txt")

rule make:
    output: storage.nbank("nbank://{name}.txt")
    shell: "echo {content} > {{output}}"
"""


def test_reruns_keep_the_archived_output(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    """--forcerun and a changed rule: the archived output is kept (and said so),
    the same content is accepted; different content is one error that changes
    nothing."""
    name = f"rerun_{uniq}"
    fields = dict(archive=str(archive.path), dtype=archive.dtype, name=name)
    env = setup(tmp_path, backend, SNAKEFILE_RERUN, content="same", **fields)
    snakemake(tmp_path, env=env)
    record = archive.registry.get_resource(name)
    (path,) = archived_files(archive.path, name)

    forced = log_of(snakemake(tmp_path, "--forcerun", "make", env=env))
    assert f"Kept nbank:/{name}.txt: archived resources are immutable" in forced
    assert "Forced execution" in forced
    setup(tmp_path, backend, SNAKEFILE_RERUN, content="'same'", **fields)
    changed = log_of(snakemake(tmp_path, env=env))  # same output, new code
    assert "Code has changed" in changed and "Kept nbank:/" in changed
    assert "Nothing to be done" in log_of(snakemake(tmp_path, env=env))

    setup(tmp_path, backend, SNAKEFILE_RERUN, content="different", **fields)
    proc = snakemake(tmp_path, env=env, check=False)
    assert proc.returncode != 0
    assert log_of(proc).count("already registered with different content") == 1
    assert archive.registry.get_resource(name) == record
    assert path.read_text() == "same\n" and archived_files(archive.path, name) == [path]
    assert staging_is_empty(archive.path)


SNAKEFILE_TWO = """
storage:
    provider="nbank", archive={archive!r}, dtype={dtype!r}

rule all:
    input: storage.nbank(["nbank://{a}.txt", "nbank://{b}.txt"])

rule make:
    output: storage.nbank("nbank://{a}.txt"), storage.nbank("nbank://{b}.txt")
    shell: "echo a{uniq} > {{output[0]}}; echo b{uniq} > {{output[1]}}; touch {marker}; sleep {pause}"
"""


@SQLITE_ONLY
def test_half_deposited_and_incomplete_jobs_rerun(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    """A job one of whose outputs is archived already (a half-deposited job) and
    that was killed while running: --rerun-incomplete runs it, keeps the archived
    output and deposits the other."""
    a, b, marker = f"half_a_{uniq}", f"half_b_{uniq}", tmp_path / "started"
    deposit_one(archive, tmp_path / "a.txt", a, f"a{uniq}\n", derived=True)
    before = archive.registry.get_resource(a)
    fields = dict(
        archive=str(archive.path), dtype=archive.dtype, a=a, b=b, uniq=uniq,
        marker=marker,
    )  # fmt: skip
    env = setup(tmp_path, backend, SNAKEFILE_TWO, pause=60, **fields)
    job = subprocess.Popen(
        [SNAKEMAKE, "--cores", "1"], cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the job did not start"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert archive.registry.get_resources([b]) == {}
    setup(tmp_path, backend, SNAKEFILE_TWO, pause=0, **fields)
    snakemake(tmp_path, "--unlock", env=env)  # the killed run's lock
    refused = snakemake(tmp_path, env=env, check=False)
    assert refused.returncode != 0 and "incomplete" in log_of(refused).lower()
    rerun = log_of(snakemake(tmp_path, "--rerun-incomplete", env=env))
    assert f"Kept nbank:/{a}.txt" in rerun
    assert archive.registry.get_resource(a) == before
    assert archive.registry.get_resource(b)["metadata"]["step"] == "make"
    assert archived_files(archive.path, b)[0].read_text() == f"b{uniq}\n"


# -- 4: a job's outputs, all or nothing --------------------------------------------
SNAKEFILE_MIXED = """
storage:
    provider="nbank", archive={archive!r}

rule all:
    input: storage.nbank(["nbank://{a}.{ext1}", "nbank://{b}.{ext2}"])

rule make:
    output: storage.nbank("nbank://{a}.{ext1}"), storage.nbank("nbank://{b}.{ext2}")
    shell: "echo a{uniq} > {{output[0]}}; echo b{uniq} > {{output[1]}}"
"""


def test_a_jobs_outputs_are_deposited_all_or_nothing(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    """Two outputs of two datatypes; the second cannot be deposited (its id holds
    other content): the first is not left archived, and the job can be run again
    once the conflict is resolved."""
    ext1, ext2 = f"f{uniq[:7]}", f"g{uniq[:7]}"
    archive.registry.add_datatype(f"one-{uniq}", "text/plain", ext1)
    archive.registry.add_datatype(f"two-{uniq}", "text/plain", ext2)
    a, b = f"pair_a_{uniq}", f"pair_b_{uniq}"
    deposit_one(archive, tmp_path / "b.txt", b, f"other {uniq}\n", derived=False)
    env = setup(
        tmp_path, backend, SNAKEFILE_MIXED,
        archive=str(archive.path), a=a, b=b, ext1=ext1, ext2=ext2, uniq=uniq,
    )  # fmt: skip
    proc = snakemake(tmp_path, env=env, check=False)
    assert proc.returncode != 0
    assert "all or nothing" in log_of(proc)
    assert archive.registry.get_resources([a]) == {}
    assert archived_files(archive.path, a) == []
    assert archived_files(archive.path, b)[0].read_text() == f"other {uniq}\n"
    assert staging_is_empty(archive.path)


# -- 5: temp() with the plugin as default storage ----------------------------------
SNAKEFILE_TEMP = """
rule all:
    input: "fin_{uniq}.txt"

rule mid:
    output: temp("mid_{uniq}.txt")
    shell: "echo mid > {{output}}"

rule fin:
    input: "mid_{uniq}.txt"
    output: "fin_{uniq}.txt"
    shell: "cat {{input}} > {{output}}; echo fin >> {{output}}"
"""


@SQLITE_ONLY
def test_temp_with_default_storage_provider(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    env = setup(tmp_path, backend, SNAKEFILE_TEMP, uniq=uniq)
    proc = snakemake(
        tmp_path,
        "--default-storage-provider", "nbank",
        "--storage-nbank-archive", str(archive.path),
        "--storage-nbank-dtype", archive.dtype,
        env=env,
    )  # fmt: skip
    assert f"Kept nbank:/mid_{uniq}.txt: archived resources" in log_of(proc)
    assert archived_files(archive.path, f"fin_{uniq}")[0].read_text() == "mid\nfin\n"
    assert archive.registry.get_resources([f"mid_{uniq}"])


# -- 6: --touch and --delete-all-output --------------------------------------------
SNAKEFILE_TOUCH = """
storage:
    provider="nbank", archive={archive!r}, dtype={dtype!r}

rule all:
    input: "table_{uniq}.txt"

rule make:
    output: storage.nbank("nbank://{name}.txt")
    shell: "echo made >> {marker}; echo {content} > {{output}}"

rule table:
    input: storage.nbank("nbank://{name}.txt")
    output: "table_{uniq}.txt"
    shell: "cat {{input}} > {{output}}"
"""


@SQLITE_ONLY
def test_touch_accepts_a_changed_rule(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    name, marker = f"touched_{uniq}", tmp_path / "runs"
    fields = dict(
        archive=str(archive.path), dtype=archive.dtype, name=name, uniq=uniq,
        marker=marker,
    )  # fmt: skip
    env = setup(tmp_path, backend, SNAKEFILE_TOUCH, content="v1", **fields)
    snakemake(tmp_path, env=env)
    record = archive.registry.get_resource(name)
    setup(tmp_path, backend, SNAKEFILE_TOUCH, content="v2", **fields)
    assert "Code has changed" in log_of(snakemake(tmp_path, "-n", env=env))
    touched = log_of(snakemake(tmp_path, "--touch", env=env))
    assert f"Accepted the archived nbank:/{name}.txt" in touched
    assert "Nothing to be done" in log_of(snakemake(tmp_path, env=env))
    assert marker.read_text() == "made\n"  # the job ran once, before the change
    assert archive.registry.get_resource(name) == record


@SQLITE_ONLY
def test_delete_all_output_keeps_archived(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    name = f"deleted_{uniq}"
    env = setup(
        tmp_path, backend, SNAKEFILE_TOUCH,
        archive=str(archive.path), dtype=archive.dtype, name=name, uniq=uniq,
        marker=tmp_path / "runs", content="v1",
    )  # fmt: skip
    snakemake(tmp_path, env=env)
    proc = snakemake(tmp_path, "--delete-all-output", env=env)
    assert f"Kept nbank:/{name}.txt: archived resources are immutable" in log_of(proc)
    assert not (tmp_path / f"table_{uniq}.txt").exists()
    assert archived_files(archive.path, name)[0].read_text() == "v1\n"
    assert archive.registry.get_resources([name])


# -- 7: queries Snakemake makes of paths --------------------------------------------
@SQLITE_ONLY
def test_default_prefix_and_cleanup_metadata(
    backend, archive, uniq: str, tmp_path: Path
) -> None:
    env = setup(tmp_path, backend, SNAKEFILE_TEMP, uniq=uniq)
    snakemake(
        tmp_path,
        "--default-storage-provider", "nbank",
        "--default-storage-prefix", "nbank:",
        "--storage-nbank-archive", str(archive.path),
        "--storage-nbank-dtype", archive.dtype,
        env=env,
    )  # fmt: skip
    assert archive.registry.get_resources([f"fin_{uniq}"])
    metadata = tmp_path / ".snakemake" / "metadata"
    before = len(list(metadata.iterdir()))
    for query in (f"nbank://fin_{uniq}.txt", f"nbank:/mid_{uniq}.txt"):
        snakemake(tmp_path, "--cleanup-metadata", query, env=env)
    assert len(list(metadata.iterdir())) == before - 2


# -- 8: inputs of an archive that is not mounted here --------------------------------
SNAKEFILE_REMOTE = """
rule all:
    input: "copied_{uniq}.bin"

rule copy:
    input: storage.nbank("nbank:{name}.bin")
    output: "copied_{uniq}.bin"
    shell: "cat {{input}} > {{output}}; test -e {root}/nbank.json || echo absent >> {{output}}"
"""


def can_hide_directories() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not can_hide_directories(), reason="needs root and unshare -m")
def test_input_downloaded_where_its_archive_is_absent(
    django_registry, http_registry, uniq: str, tmp_path: Path
) -> None:
    """The archive lives where django-neurobank serves it from, and snakemake runs
    in a mount namespace where that directory is an empty tmpfs: the input is
    downloaded through the registry, checked against its sha1."""
    from fsspec_helpers import make_downloadable

    hidden = django_registry.workdir / "sendfile" / f"sm-{uniq}"
    cfg = init_archive(hidden / "archive", registry=http_registry, name=f"sm-{uniq}")
    dtype, name = f"bin-{uniq}", f"far_{uniq}"
    http_registry.add_datatype(dtype, "application/octet-stream", "bin")
    make_downloadable(django_registry, dtype)
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    (result,) = deposit(
        cfg, [DepositItem(tmp_path / "in.bin", name=name)], dtype=dtype,
        registry=http_registry,
    )  # fmt: skip
    assert result.ok, result.error
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(
        SNAKEFILE_REMOTE.format(uniq=uniq, name=name, root=cfg.path)
    )
    env = clean_env(
        work,
        {"NBANK_REGISTRY": django_registry.url, "NBANK_AUTH": ":".join(
            django_registry.auth)},
    )  # fmt: skip
    hide = f'mount -t tmpfs tmpfs "{hidden}" && exec "$0" "$@"'
    proc = run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", hide,
         SNAKEMAKE, "--cores", "1"],
        work, env,
    )  # fmt: skip
    assert f"Downloaded nbank:/{name}.bin from the registry" in log_of(proc)
    assert (work / f"copied_{uniq}.bin").read_bytes() == data + b"absent\n"
    assert sha1_file(cfg.path / "resources" / name[:2] / f"{name}.bin") == result.sha1


# -- 9: outputs staged by a link, or copied where Snakemake keeps them --------------
SNAKEFILE_KEEP = """
storage:
    provider="nbank", archive={archive!r}, dtype={dtype!r}

rule all:
    input: storage.nbank("nbank://{name}_linked.txt"), storage.nbank("nbank://{name}_kept.txt", keep_local=True)

rule linked:
    output: storage.nbank("nbank://{name}_linked.txt")
    shell: "echo linked {name} > {{output}}"

rule kept:
    output: storage.nbank("nbank://{name}_kept.txt", keep_local=True)
    shell: "echo kept {name} > {{output}}"
"""


@SQLITE_ONLY
def test_outputs_linked_or_copied(backend, archive, uniq: str, tmp_path: Path) -> None:
    """An output Snakemake deletes after storing is staged by a link (its archived
    file has no other name once the run is over); one it keeps is a copy."""
    name = f"stage_{uniq}"
    env = setup(
        tmp_path, backend, SNAKEFILE_KEEP,
        archive=str(archive.path), dtype=archive.dtype, name=name,
    )  # fmt: skip
    snakemake(tmp_path, env=env)
    local = tmp_path / ".snakemake" / "storage" / "nbank"
    (linked,) = archived_files(archive.path, f"{name}_linked")
    (kept,) = archived_files(archive.path, f"{name}_kept")
    assert linked.read_text() == f"linked {name}\n" and linked.stat().st_nlink == 1
    assert not (local / f"{name}_linked.txt").exists()
    assert (local / f"{name}_kept.txt").read_text() == f"kept {name}\n"
    assert not os.path.samefile(local / f"{name}_kept.txt", kept)
    assert staging_is_empty(archive.path)
