"""The nbank storage plugin's objects, against both registries: Snakemake's shared
``TestStorageBase`` suite, queries, bulk inventory, links, deposits and refusals."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from snakemake.io import IOCache
from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_storage_plugins.tests import TestStorageBase
from snakemake_storage_plugin_nbank import (
    StorageObject,
    StorageProvider,
    StorageProviderSettings,
)

from nbank_core import DepositItem, deposit, same_registry, sha1_file
from nbank_core.config import registry_mismatch

LOG = logging.getLogger("test-nbank-storage")


def settings_for(arch, /, **extra: str) -> StorageProviderSettings:
    """Settings for the test archive ``arch``; ``extra`` overrides them."""
    b = arch.backend
    values = {
        "registry": b.url,
        "auth": ":".join(b.auth) if b.auth else None,
        "archive": str(arch.path),
        "dtype": arch.dtype,
        **extra,
    }
    return StorageProviderSettings(**values)


def provider_for(tmp_path: Path, settings: StorageProviderSettings) -> StorageProvider:
    return StorageProvider(
        local_prefix=tmp_path / "local-prefix", logger=LOG, settings=settings
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def deposit_texts(archive, tmp_path: Path, texts: dict[str, str]) -> None:
    items = [
        DepositItem(write(tmp_path / "src" / f"{name}.txt", text), name=name)
        for name, text in texts.items()
    ]
    results = deposit(
        archive.cfg, items, dtype=archive.dtype, registry=archive.registry
    )
    assert all(r.ok for r in results), [r.error for r in results]


# -- the shared suite ------------------------------------------------------------
class TestNbankStorage(TestStorageBase):
    """Stores, inspects, inventories, retrieves and removes one output."""

    __test__ = True
    files_only = True

    @pytest.fixture(autouse=True)
    def _archive(self, archive, uniq: str) -> None:
        self.archive, self.uniq = archive, uniq

    def get_storage_provider_cls(self) -> type[StorageProvider]:
        return StorageProvider

    def get_storage_provider_settings(self) -> StorageProviderSettings:
        return settings_for(self.archive, allow_remove="yes")

    def get_query(self, tmp_path: Path) -> str:
        return f"nbank://suite_{self.uniq}.txt"

    def get_query_not_existing(self, tmp_path: Path) -> str:
        return f"nbank:absent_{self.uniq}"

    def test_removed_for_good(self, tmp_path: Path) -> None:
        """After the suite's store and remove, neither record nor file remains."""
        self.test_storage(tmp_path)
        ident = f"suite_{self.uniq}"
        assert self.archive.registry.get_resources([ident]) == {}
        assert not list(self.archive.path.glob(f"resources/*/{ident}*"))


# -- queries ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "nbank:st32_1_2_1",
        "nbank://st32_1_2_1",
        "nbank:/st32_1_2_1",
        "st32_1_2_1",
        "nbank://{unit}_spikes",
        "nbank:{unit}_spikes.csv",
        "nbank://{unit,[a-z]+}_{n,\\d+}.wav",
        "nbank://a-b_c/",
    ],
)
def test_valid_queries(query: str) -> None:
    assert StorageProvider.is_valid_query(query)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("nbank://a/b", "ids may only contain"),
        ("nbank:with space", "ids may only contain"),
        ("nbank://a.tar.gz", "one '.ext' of 1-16"),
        ("nbank://abc.", "one '.ext' of 1-16"),
        ("nbank://https://host/neurobank/resources/x/", "ids may only contain"),
        ("s3://bucket/key", "not an nbank query"),
        ("https://host/neurobank/resources/x/", "not an nbank query"),
        ("nbank://", "cannot be empty"),
        ("nbank://" + "x" * 256, "at most 255"),
    ],
)
def test_invalid_queries_say_why(query: str, reason: str) -> None:
    result = StorageProvider.is_valid_query(query)
    assert not result
    assert reason in result.reason


def test_queries_are_normalised(tmp_path: Path, archive) -> None:
    provider = provider_for(tmp_path, settings_for(archive))
    for query in (
        "nbank:u1.csv",
        "nbank://u1.csv",
        "nbank:/u1.csv",
        "u1.csv",
        " nbank:u1.csv/",
    ):
        obj = provider.object(query)
        assert obj.query == "nbank:/u1.csv"  # the form Snakemake makes of paths
        assert obj.local_path() == tmp_path / "local-prefix" / "u1.csv"
        assert (obj.nbank_id, obj.ext) == ("u1", ".csv")


@given(st.text())
def test_postprocess_never_raises(text: str) -> None:
    provider = StorageProvider.__new__(StorageProvider)  # postprocess needs no state
    out = provider.postprocess_query(text)
    assert out == text or StorageProvider.is_valid_query(out)


# -- reading ---------------------------------------------------------------------
def test_inventory_is_one_bulk_request(
    tmp_path: Path, archive, uniq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty inputs and thirty missing outputs: one inventory fills everything
    with bulk requests, and nothing asks the registry again."""
    names = [f"in{i}_{uniq}" for i in range(30)]
    deposit_texts(archive, tmp_path, {n: f"content of {n}" for n in names})
    provider = provider_for(tmp_path, settings_for(archive))
    inputs = [provider.object(f"nbank:{n}.txt") for n in names]
    outputs = [provider.object(f"nbank:out{i}_{uniq}") for i in range(30)]
    calls: list[str] = []
    reg = provider.registry
    for method in ("locate_resources", "get_resources", "get_resource"):
        real = getattr(reg, method)

        def counted(*args, _real=real, _name=method, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        # the registry is the process's shared one: undo the counting afterwards
        monkeypatch.setattr(reg, method, counted)

    cache = IOCache(max_wait_time=10)
    asyncio.run(inputs[0].inventory(cache))
    # one locate for all sixty; one get for the thirty with no location
    assert sorted(calls) == ["get_resources", "locate_resources"]
    for obj in inputs:
        key = str(obj.local_path())
        assert cache.exists_in_storage[key] is True
        assert cache.size[key] == len(f"content of {obj.nbank_id}")
        assert cache.checksum[key].startswith("sha1:")
        assert cache.mtime[key].storage() is not None
    for obj in outputs:
        assert cache.exists_in_storage[str(obj.local_path())] is False
    asyncio.run(inputs[5].inventory(cache))
    for obj in inputs:
        assert obj.exists() and obj.size() > 0 and obj.mtime() > 0
        assert obj.checksum() == "sha1:" + sha1_file(
            archive.path / "resources" / obj.nbank_id[:2] / f"{obj.nbank_id}.txt"
        )
    assert len(calls) == 2


def test_retrieve_links_and_never_touches_the_archive(
    tmp_path: Path, archive, uniq: str
) -> None:
    name = f"linked_{uniq}"
    deposit_texts(archive, tmp_path, {name: "stimulus"})
    archived = archive.path / "resources" / name[:2] / f"{name}.txt"
    before = (sha1_file(archived), os.stat(archived).st_mtime_ns)
    provider = provider_for(tmp_path, settings_for(archive))
    obj = provider.object(f"nbank:{name}.txt")
    assert obj.local_footprint() == 0
    obj.retrieve_object()
    local = obj.local_path()
    assert local.is_symlink() and local.resolve() == archived.resolve()
    assert local.read_text() == "stimulus"
    obj.retrieve_object()  # again: the link is replaced, not duplicated
    assert sorted(p.name for p in local.parent.iterdir()) == [local.name]
    local.unlink()  # what Snakemake's cleanup does
    assert (sha1_file(archived), os.stat(archived).st_mtime_ns) == before


def test_registered_elsewhere_names_the_archive(
    tmp_path: Path, archive, uniq: str
) -> None:
    name = f"far_{uniq}"
    deposit_texts(archive, tmp_path, {name: "far away"})
    os.rename(archive.path, tmp_path / "unmounted")  # the archive is not here
    provider = provider_for(tmp_path, settings_for(archive, archive=""))  # reading only
    obj = provider.object(f"nbank:{name}")
    assert obj.exists()
    with pytest.raises(WorkflowError, match=f"arch-{uniq}.*no copy is on this host"):
        obj.retrieve_object()
    assert not obj.local_path().exists()


def test_unregistered_input_does_not_exist(tmp_path: Path, archive, uniq: str) -> None:
    obj = provider_for(tmp_path, settings_for(archive)).object(f"nbank:nope_{uniq}")
    assert not obj.exists()
    with pytest.raises(WorkflowError, match="not registered"):
        obj.retrieve_object()


# -- writing ---------------------------------------------------------------------
def stored(provider: StorageProvider, query: str, text: str) -> StorageObject:
    obj = provider.object(query)
    # a new file, as a job writes it: Snakemake removes the local copy of an output
    # before running its job (a deposit may have staged the old one by a link)
    obj.local_path().unlink(missing_ok=True)
    write(obj.local_path(), text)
    obj.store_object()
    return obj


def test_store_is_idempotent_and_refuses_new_content(
    tmp_path: Path, archive, uniq: str
) -> None:
    name = f"out_{uniq}"
    first = stored(
        provider_for(tmp_path, settings_for(archive)), f"nbank:{name}.csv", "a,b\n"
    )
    # stored again (the cluster path): success, still one record and one file
    second = stored(
        provider_for(tmp_path, settings_for(archive)), f"nbank:{name}.csv", "a,b\n"
    )
    assert second.exists() and second.checksum() == first.checksum()
    assert [r["name"] for r in archive.registry.search(name=name)] == [name]
    files = list(archive.path.glob(f"resources/*/{name}*"))
    assert [f.name for f in files] == [f"{name}.csv"]
    with pytest.raises(WorkflowError, match="different content"):
        stored(
            provider_for(tmp_path, settings_for(archive)), f"nbank:{name}.csv", "c\n"
        )
    assert files[0].read_text() == "a,b\n"


def test_mtime_is_never_in_the_future(tmp_path: Path, archive, uniq: str) -> None:
    """Snakemake stops on a time in the future (clock skew with the archive's
    file server); the plugin reports such a file as modified now."""
    obj = stored(provider_for(tmp_path, settings_for(archive)), f"nbank:t_{uniq}", "t")
    (path,) = archive.path.glob(f"resources/*/t_{uniq}")
    future = time.time() + 3600
    os.utime(path, (future, future))
    assert obj.mtime() <= time.time()


def test_unknown_dtype_is_a_workflow_error(tmp_path: Path, archive, uniq: str) -> None:
    provider = provider_for(tmp_path, settings_for(archive, dtype=f"nodtype-{uniq}"))
    with pytest.raises(WorkflowError, match=f"nodtype-{uniq}"):
        stored(provider, f"nbank:x_{uniq}", "x")
    assert archive.registry.get_resources([f"x_{uniq}"]) == {}


def test_provenance_and_settings_metadata(tmp_path: Path, archive, uniq: str) -> None:
    settings = settings_for(archive, metadata='{"project": "songs", "n": 3}')
    stored(provider_for(tmp_path, settings), f"nbank:meta_{uniq}", "m")
    meta = archive.registry.get_resource(f"meta_{uniq}")["metadata"]
    assert meta["project"] == "songs" and meta["n"] == 3
    assert meta["engine"] == "snakemake"
    assert meta["engine_version"].count(".") >= 1


def test_user_metadata_wins_over_provenance(tmp_path: Path, archive, uniq: str) -> None:
    settings = settings_for(archive, metadata='{"engine": "by hand"}')
    stored(provider_for(tmp_path, settings), f"nbank:own_{uniq}", "o")
    meta = archive.registry.get_resource(f"own_{uniq}")["metadata"]
    assert meta["engine"] == "by hand" and "engine_version" in meta


def test_remove_keeps_unless_allowed(
    tmp_path: Path, archive, uniq: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without allow_remove, removal keeps the resource and says so; a local copy
    that is the archived file (staged by a link) is unlinked, never written."""
    name = f"keep_{uniq}"
    obj = stored(provider_for(tmp_path, settings_for(archive)), f"nbank:{name}", "k")
    (archived,) = archive.path.glob(f"resources/*/{name}")
    assert os.path.samefile(obj.local_path(), archived)  # linked, not copied
    with caplog.at_level(logging.INFO, logger=LOG.name):
        obj.remove()
    assert f"Kept nbank:/{name}: archived resources are immutable" in caplog.text
    assert archive.registry.get_resources([name])
    assert archived.read_text() == "k"
    assert not obj.local_path().exists()


def test_kept_local_copy_is_a_copy(tmp_path: Path, archive, uniq: str) -> None:
    """An output whose local copy Snakemake keeps is copied, never linked."""
    provider = provider_for(tmp_path, settings_for(archive))
    obj = provider.object(f"nbank:kept_{uniq}.txt")
    obj.keep_local = True
    write(obj.local_path(), "kept")
    obj.store_object()
    (archived,) = archive.path.glob(f"resources/*/kept_{uniq}.txt")
    assert not os.path.samefile(obj.local_path(), archived)
    assert archived.read_text() == "kept"


def test_remove_only_in_own_archive(tmp_path: Path, archive, uniq: str) -> None:
    """An id registered in another archive is never removed, even when allowed."""
    from nbank_core import init_archive

    other = init_archive(
        tmp_path / "other", registry=archive.registry, name=f"other-{uniq}"
    )
    name = f"theirs_{uniq}"
    write(tmp_path / "theirs.txt", f"theirs {uniq}")  # unique: sha1s are unique
    (result,) = deposit(
        other,
        [DepositItem(tmp_path / "theirs.txt", name=name)],
        dtype=archive.dtype,
        registry=archive.registry,
    )
    assert result.ok, result.error
    obj = provider_for(tmp_path, settings_for(archive, allow_remove="yes")).object(
        f"nbank:{name}"
    )
    with pytest.raises(WorkflowError, match="outside the archive"):
        obj.remove()
    assert archive.registry.get_resources([name])


def test_store_needs_archive_and_dtype(tmp_path: Path, archive, uniq: str) -> None:
    for missing, message in (("archive", "needs an archive"), ("dtype", "datatype")):
        provider = provider_for(tmp_path, settings_for(archive, **{missing: ""}))
        with pytest.raises(WorkflowError, match=message):
            stored(provider, f"nbank:x_{uniq}", "x")


def test_bad_settings_are_workflow_errors(tmp_path: Path, archive) -> None:
    with pytest.raises(WorkflowError, match="allow_remove must be"):
        provider_for(tmp_path, settings_for(archive, allow_remove="maybe"))
    with pytest.raises(WorkflowError, match="JSON object"):
        provider_for(tmp_path, settings_for(archive, metadata="[1, 2]"))
    with pytest.raises(WorkflowError, match="user:password"):
        provider_for(tmp_path, settings_for(archive, auth="nopassword"))


def test_secrets_stay_out_of_repr(archive) -> None:
    settings = StorageProviderSettings(registry="http://h/neurobank/", auth="me:s3cret")
    assert "s3cret" not in repr(settings)


def test_unreachable_registry_is_a_workflow_error(tmp_path: Path) -> None:
    from servers import free_port

    settings = StorageProviderSettings(
        registry=f"http://127.0.0.1:{free_port()}/neurobank/"
    )
    obj = provider_for(tmp_path, settings).object("nbank:anything")
    with pytest.raises(WorkflowError, match="nbank:/anything"):
        obj.exists()


def test_the_archive_names_the_registry(
    tmp_path: Path, archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NBANK_REGISTRY does not override the archive's registry; an explicit
    registry setting that differs is nbank's one mismatch error."""
    other = "sqlite://" + str(tmp_path / "other.sqlite")
    monkeypatch.setenv("NBANK_REGISTRY", other)
    provider = provider_for(tmp_path, settings_for(archive, registry=None))
    assert same_registry(provider.registry_url, archive.cfg.registry)
    with pytest.raises(WorkflowError) as info:
        provider_for(tmp_path, settings_for(archive, registry=other))
    expected = registry_mismatch(archive.path, archive.cfg.registry, other)
    assert str(info.value).count(expected) == 1
    assert not (tmp_path / "other.sqlite").exists()


def test_reading_needs_no_archive(
    tmp_path: Path, archive, uniq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an archive, inputs are read through NBANK_REGISTRY."""
    name = f"read_{uniq}"
    deposit_texts(archive, tmp_path, {name: "read me"})
    monkeypatch.setenv("NBANK_REGISTRY", archive.backend.url)
    settings = settings_for(archive, registry=None, archive=None)
    obj = provider_for(tmp_path, settings).object(f"nbank:{name}.txt")
    obj.retrieve_object()
    assert obj.local_path().read_text() == "read me"
