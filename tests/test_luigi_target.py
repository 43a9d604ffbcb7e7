"""NbankTarget, ResourceIdParameter and the [nbank] settings, on both registries."""

# ruff: noqa: F401, F811 - fixtures are imported from luigi_helpers

from __future__ import annotations

import os
import pickle
import stat

import pytest
from luigi_helpers import (
    LuigiStatusCode,
    archived,
    build,
    clean_luigi,
    nbank_env,
    put,
    set_config,
)
from luigi_tasks import Upper
from nbank_luigi import (
    NbankResource,
    NbankTarget,
    ResourceIdParameter,
    SettingsError,
    clear_cache,
    nbank,
)
from servers import free_port

from nbank_core import (
    AlreadyExists,
    ConfigError,
    NotFound,
    PolicyError,
    RegistryUnavailable,
    init_archive,
)
from nbank_core.config import registry_mismatch


def test_exists_means_registered_and_archived(nbank_env, uniq):
    put(nbank_env, f"in{uniq}", f"some data {uniq}\n")
    assert NbankTarget(f"in{uniq}").exists()
    assert NbankTarget(f"nbank://in{uniq}").exists()
    assert not NbankTarget(f"absent{uniq}").exists()
    # registered, but the file is gone from the archive: not complete
    path = NbankTarget(f"in{uniq}").locate()
    os.chmod(path.parent, 0o775)
    path.unlink()
    clear_cache()
    assert not NbankTarget(f"in{uniq}").exists()
    with pytest.raises(NotFound, match="no copy is on this host"):
        NbankTarget(f"in{uniq}").open().close()


@pytest.mark.slow
def test_registry_errors_propagate_from_exists(backend, monkeypatch):
    for key, value in backend.env.items():
        monkeypatch.setenv(key, value)
    down = f"http://127.0.0.1:{free_port()}/neurobank/"
    target = NbankTarget("anything", registry=down)
    with pytest.raises(RegistryUnavailable, match="cannot reach the registry"):
        target.exists()
    # luigi reports the failed completeness check; the task is not run
    set_config(nbank={"registry": down})
    result = build([Upper(unit="st1")])
    assert result.status == LuigiStatusCode.SCHEDULING_FAILED


@pytest.mark.parametrize("binary", [False, True])
def test_write_then_read(nbank_env, uniq, binary):
    target = NbankTarget(f"out{uniq}", metadata={"stimulus": "song"}, suffix=".dat")
    assert not target.exists()
    data = f"gr\u00fcn\n{uniq}\n"
    with target.open("wb" if binary else "w") as out:
        out.write(data.encode() if binary else data)
    assert target.exists()
    assert target.locate().name == f"out{uniq}.dat"
    with target.open("rb" if binary else "r") as src:
        assert src.read() == (data.encode() if binary else data)
    record = nbank_env.registry.get_resource(f"out{uniq}")
    assert record["dtype"] == nbank_env.dtype
    assert record["metadata"]["stimulus"] == "song"
    assert archived(nbank_env) == ["ou", f"out{uniq}.dat"]


def test_exception_mid_write_publishes_nothing(nbank_env, uniq):
    target = NbankTarget(f"half{uniq}")
    with pytest.raises(RuntimeError, match="crash"), target.open("w") as out:
        out.write("partial")
        out.flush()
        assert len(staged_entries(nbank_env.cfg)) == 1
        raise RuntimeError("crash")
    assert archived(nbank_env) == []
    assert nbank_env.registry.get_resources([f"half{uniq}"]) == {}
    assert not target.exists()


def test_unclosed_file_is_discarded(nbank_env, uniq):
    out = NbankTarget(f"lost{uniq}").open("w")
    out.write("never closed")
    del out
    assert archived(nbank_env) == []
    assert nbank_env.registry.get_resources([f"lost{uniq}"]) == {}


def test_temporary_path(nbank_env, uniq):
    target = NbankTarget(f"tp{uniq}")
    with pytest.raises(RuntimeError), target.temporary_path() as tmp:
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("command failed")
    assert archived(nbank_env) == []
    with pytest.raises(NotFound, match="nothing was written"):
        with target.temporary_path():
            pass
    with target.temporary_path() as tmp:
        assert os.path.dirname(tmp) == str(nbank_env.cfg.staging_dir)
        with open(tmp, "w") as f:
            f.write(f"complete {uniq}")
    assert target.exists()
    assert target.locate().read_text() == f"complete {uniq}"
    assert archived(nbank_env) == ["tp", f"tp{uniq}"]


def test_same_content_is_idempotent_other_content_fails(nbank_env, uniq):
    target = NbankTarget(f"once{uniq}")
    with target.open("w") as out:
        out.write(f"v1 {uniq}")
    with target.open("w") as out:  # identical: success, nothing new
        out.write(f"v1 {uniq}")
    assert out.result.status == "exists"
    with pytest.raises(AlreadyExists, match="different content"):
        with target.open("w") as out:
            out.write(f"v2 {uniq}")
    assert target.locate().read_text() == f"v1 {uniq}"
    assert archived(nbank_env) == ["on", f"once{uniq}"]


def test_dtype_is_required_and_checked(archive, monkeypatch, uniq):
    for key, value in archive.backend.env.items():
        monkeypatch.setenv(key, value)
    set_config(nbank={"archive": archive.path})
    with pytest.raises(ConfigError, match="no datatype for output"):
        NbankTarget(f"x{uniq}").open("w")
    with pytest.raises(NotFound):
        NbankTarget(f"x{uniq}", dtype=f"nope{uniq}").open("w")
    assert archived(archive) == []


def test_archive_is_required_for_writing(backend, monkeypatch):
    for key, value in backend.env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="no archive to deposit"):
        NbankTarget("x1", dtype="txt").open("w")


def test_registry_comes_from_the_archive(archive, monkeypatch, tmp_path):
    other = "sqlite://" + str(tmp_path / "other.sqlite")
    monkeypatch.setenv("NBANK_REGISTRY", other)  # ignored: the archive names its own
    set_config(nbank={"archive": archive.path})
    assert NbankTarget("x1").settings.registry == archive.cfg.registry
    assert NbankTarget("x1").archive == str(archive.path)
    # an explicit registry must be the archive's: any spelling of it is
    same = archive.cfg.registry.replace("http://", "HTTP://").rstrip("/")
    set_config(nbank={"registry": same})
    assert NbankTarget("x1").settings.registry == archive.cfg.registry
    # another one is the core's one-line error, when the target is made
    set_config(nbank={"registry": other})
    expected = registry_mismatch(archive.path, archive.cfg.registry, other)
    with pytest.raises(SettingsError) as err:
        NbankTarget("x1")
    assert str(err.value) == expected and "\n" not in expected
    assert isinstance(err.value, ConfigError)
    set_config(nbank={"registry": ""})
    with pytest.raises(SettingsError, match="set explicitly to"):
        NbankTarget("x2", registry=other)


def test_target_pickles_without_connections(nbank_env, uniq):
    put(nbank_env, f"pk{uniq}", uniq)
    task = Upper(unit=f"pk{uniq}")
    target = task.output()
    assert target.task is task
    assert task.input().exists()  # the registry has been used: a session is open
    clone = pickle.loads(pickle.dumps(target))
    assert clone == target and clone.task.task_id == task.task_id
    assert "Session" not in repr(pickle.dumps(target))
    assert "Session" not in repr(pickle.dumps(target.resolver))
    assert pickle.loads(pickle.dumps(task.input())).exists()
    assert pickle.loads(pickle.dumps(task)).output() == target


def test_resource_id_parameter_normalises(backend, monkeypatch):
    monkeypatch.setenv("NBANK_REGISTRY", backend.url)
    forms = ["st32_1", "nbank:st32_1", "nbank://st32_1", " st32_1 "]
    if backend.kind == "http":
        forms.append(backend.url + "resources/st32_1/")
    ids = {NbankResource(f).task_id for f in forms}
    assert len(ids) == 1
    other = "http://other.example/neurobank/resources/st32_1/"
    assert ResourceIdParameter().normalize(other) == other
    assert NbankTarget(other).settings.registry == "http://other.example/neurobank/"
    with pytest.raises(ValueError, match="invalid identifier"):
        NbankResource("../etc")


def test_config_section_and_modes(nbank_env):
    assert nbank().archive == str(nbank_env.path)
    with pytest.raises(ValueError, match="unsupported mode"):
        NbankTarget("x1").open("a")
    with pytest.raises(ConfigError, match="invalid suffix"):
        NbankTarget("x1", suffix="csv")


def test_read_only_archive_mode_does_not_block_cleanup(nbank_env, uniq):
    target = NbankTarget(f"ro{uniq}")
    with target.open("w") as out:
        out.write(uniq)
    mode = stat.S_IMODE(target.locate().stat().st_mode)
    assert not mode & 0o222  # the archive's policy: read-only resources
    assert list(nbank_env.cfg.staging_dir.iterdir()) == []


def test_writes_use_the_cores_staged_name_and_luigis_atomic_file(nbank_env, uniq):
    from luigi.target import AtomicLocalFile

    target = NbankTarget(f"sn{uniq}.csv")
    assert target.suffix == ".csv"
    with target.open("wb") as out:
        assert isinstance(out, AtomicLocalFile)
        (staged,) = staged_entries(nbank_env.cfg)
        assert staged.name.startswith(f"sn{uniq}~") and staged.name.endswith(".csv")
        out.write(b"1,2\n")
    assert target.locate().name == f"sn{uniq}.csv"
    with target.temporary_path() as tmp:
        assert os.path.basename(tmp).startswith(f"sn{uniq}~")
        assert not os.path.lexists(tmp)  # luigi's contract: not made yet
        with open(tmp, "wb") as f:
            f.write(b"1,2\n")  # identical: a success
    assert list(nbank_env.cfg.staging_dir.iterdir()) == []


def test_temporary_path_takes_a_directory(archive, monkeypatch, uniq, tmp_path):
    for key, value in archive.backend.env.items():
        monkeypatch.setenv(key, value)
    # the default policy refuses directories: nothing is left behind
    set_config(nbank={"archive": archive.path, "dtype": archive.dtype})
    with pytest.raises(PolicyError, match="forbids directories"):
        with NbankTarget(f"nodir{uniq}").temporary_path() as tmp:
            os.mkdir(tmp)
    assert archived(archive) == []
    # an archive that takes them
    dirs = init_archive(
        tmp_path / "dirs",
        registry=archive.registry,
        name=f"dirs-{uniq}",
        allow_directories=True,
    )
    target = NbankTarget(f"dir{uniq}", archive=dirs.path)
    with target.temporary_path() as tmp:
        os.mkdir(tmp)
        for name in ("a.txt", "b.txt"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(f"{name} {uniq}")
    assert target.exists()
    assert sorted(p.name for p in target.locate().iterdir()) == ["a.txt", "b.txt"]
    assert list(dirs.staging_dir.iterdir()) == []


def test_lookup_does_not_import_target():
    import ast
    import inspect

    import nbank_luigi.lookup

    tree = ast.parse(inspect.getsource(nbank_luigi.lookup))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m and m.startswith("nbank_luigi")} - {
        "nbank_luigi.config"
    }, imported


def staged_entries(cfg):
    """The staged outputs in the archive's staging area (not its journal)."""
    return [p for p in cfg.staging_dir.iterdir() if p.name != ".journal"]
