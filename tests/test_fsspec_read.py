"""Reading resources by id through ``nbank://`` with real fsspec, pandas and xarray,
on both registries (embedded and django-neurobank)."""

from __future__ import annotations

import io
import pickle
import time
import warnings

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fsspec_helpers import Nb, nb_fixture  # noqa: F401
from nbank_fsspec import NbankFileSystem, NbankPath
from servers import free_port
from upath import UPath

from nbank_core import sha1_file


def _csv(nb: Nb, rows: int = 3) -> tuple[str, bytes, pd.DataFrame]:
    """A small CSV resource (content unique, as the registry keeps sha1 unique)."""
    df = pd.DataFrame(
        {"trial": range(rows), "rate": np.linspace(0, 1, rows), "tag": f"u{nb.uniq}"}
    )
    name = nb.name("tab")
    data = df.to_csv(index=False).encode()
    nb.put(name, data)
    return name, data, df


def test_pandas_reads_by_id_with_options_and_from_the_environment(nb: Nb) -> None:
    name, _, df = _csv(nb)
    with_options = pd.read_csv(f"nbank://{name}", storage_options=nb.options)
    pd.testing.assert_frame_equal(with_options, df)
    # NBANK_REGISTRY is set by the fixture: no options at all
    NbankFileSystem.clear_instance_cache()
    pd.testing.assert_frame_equal(pd.read_csv(f"nbank://{name}"), df)


def test_xarray_opens_a_netcdf_resource(nb: Nb) -> None:
    ds = xr.Dataset(
        {"rate": (("time",), np.arange(6.0) / 3)},
        coords={"time": np.arange(6)},
        attrs={"animal": "st32", "tag": nb.uniq},
    )
    src = nb.tmp / "ds.nc"
    ds.to_netcdf(src, engine="scipy")  # netCDF3, written by xarray itself
    name = nb.name("ds")
    nb.put(name, src.read_bytes(), suffix=".nc")
    with fsspec.open(f"nbank://{name}", **nb.options) as f:
        xr.testing.assert_identical(xr.open_dataset(f, engine="scipy").load(), ds)
    local = fsspec.open_local(f"nbank://{name}", **nb.options)
    with xr.open_dataset(local, engine="scipy") as opened:
        xr.testing.assert_identical(opened.load(), ds)


def test_ranged_reads(nb: Nb) -> None:
    name, data, _ = _csv(nb, rows=50)
    fs = nb.fs
    assert fs.cat_file(name) == data
    assert fs.cat_file(name, start=5, end=17) == data[5:17]
    assert fs.cat_file(name, start=-10) == data[-10:]
    assert fs.cat_file(name, start=3, end=-4) == data[3:-4]
    assert fs.cat_file(name, start=len(data) + 5) == b""
    assert fs.read_block(name, 10, 20) == data[10:30]
    with fs.open(f"nbank://{name}", "rb") as f:
        f.seek(-7, 2)
        assert f.read() == data[-7:]
        f.seek(2)
        assert f.read(4) == data[2:6]
    assert fs.cat([name, f"nbank://{name}"]) == {name: data}


def test_open_local_returns_the_archived_file(nb: Nb) -> None:
    name, data, _ = _csv(nb)
    archived = str(nb.archived(name)[0])
    assert fsspec.open_local(f"nbank://{name}", **nb.options) == archived
    assert nb.fs.open_local(name) == archived
    with fsspec.open(f"nbank://{name}", "rb", **nb.options) as f:
        assert f.name == archived and f.read() == data


def test_info_exists_ls_and_ukey(nb: Nb) -> None:
    name, data, _ = _csv(nb)
    path = nb.archived(name)[0]
    info = nb.fs.info(f"nbank://{name}")
    assert info["name"] == name and info["type"] == "file"
    assert info["size"] == len(data)
    assert info["sha1"] == sha1_file(path) == nb.fs.ukey(name)
    assert info["dtype"] == nb.archive.dtype
    assert info["local_path"] == str(path) and info["url"] is None
    assert nb.fs.exists(name) and nb.fs.isfile(name) and not nb.fs.isdir(name)
    assert nb.fs.ls(name, detail=False) == [name]
    assert nb.fs.size(name) == len(data)
    # the root is the registry: listed only through filters
    assert nb.fs.isdir("nbank://") and nb.fs.exists("")
    with pytest.raises(ValueError, match="refused"):
        nb.fs.ls("nbank://")
    assert nb.fs.ls("", dtype=nb.archive.dtype, detail=False) == [name]
    # a full identifier names the id, looked up in this filesystem's registry
    assert nb.fs.cat_file(f"http://host/neurobank/resources/{name}/") == data


def test_unknown_and_invalid_ids_are_file_not_found(nb: Nb) -> None:
    missing = nb.name("nosuch")
    assert not nb.fs.exists(missing) and not nb.fs.isfile(missing)
    with pytest.raises(FileNotFoundError, match="not registered"):
        nb.fs.info(missing)
    with pytest.raises(FileNotFoundError):
        nb.fs.cat_file(f"nbank://{missing}")
    with pytest.raises(FileNotFoundError):
        pd.read_csv(f"nbank://{missing}", storage_options=nb.options)
    with pytest.raises(FileNotFoundError):
        fsspec.open_local(f"nbank://{missing}", **nb.options)
    with pytest.raises(FileNotFoundError, match="no resource can be named"):
        nb.fs.open("nbank://two.dots.csv")
    # the first segment is the id; the rest a path inside a directory resource
    with pytest.raises(FileNotFoundError, match="'has' is not registered"):
        nb.fs.open("nbank://has/slash")
    assert not nb.fs.exists("nbank://has/slash")
    assert not nb.fs.exists("nbank://two.dots.csv")  # one '.ext' at most


def test_a_resource_whose_archive_is_not_mounted_is_not_found(nb: Nb) -> None:
    name, _, _ = _csv(nb)
    nb.fs.invalidate_cache()
    config = nb.archive.path / "nbank.json"
    config.rename(config.with_suffix(".away"))  # the archive is not mounted here
    NbankFileSystem.clear_instance_cache()
    fs = NbankFileSystem(**nb.options)
    assert not fs.exists(name)  # and no registry serves this test's datatype
    with pytest.raises(FileNotFoundError, match="no copy is on this host"):
        fs.open_local(name)
    with pytest.raises(FileNotFoundError, match="no copy is on this host"):
        fs.cat_file(name)


def test_a_registry_that_is_down_is_an_error_not_a_missing_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registry server on a closed port: every read raises ConnectionError; none
    answers "does not exist". (Only a server can be down; this needs no backend.)"""
    url = f"http://127.0.0.1:{free_port()}/neurobank/"
    monkeypatch.setenv("NBANK_REGISTRY", url)
    # reads are still retried, without the pauses between attempts
    monkeypatch.setattr("nbank_core.registry.http.RETRY_DELAYS", (0.0, 0.0))
    NbankFileSystem.clear_instance_cache()
    fs = fsspec.filesystem("nbank")
    assert fs.registry.url == url
    for call in (fs.exists, fs.info, fs.cat_file, fs.open, fs.isfile, fs.open_local):
        with pytest.raises(ConnectionError, match="cannot reach the registry"):
            call("nbank://st32_1_2_1")
    with pytest.raises(ConnectionError):
        pd.read_csv("nbank://st32_1_2_1")
    with pytest.raises(ConnectionError):
        UPath("nbank://st32_1_2_1").exists()
    NbankFileSystem.clear_instance_cache()


def test_pickles_carry_the_registry_url(
    nb: Nb, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, data, _ = _csv(nb)
    NbankFileSystem.clear_instance_cache()
    fs = fsspec.filesystem("nbank")  # registry from NBANK_REGISTRY
    assert fs.storage_options["registry"] == nb.archive.backend.url
    blob = pickle.dumps(fs)
    opened = pickle.dumps(fsspec.open(f"nbank://{name}", **nb.options))
    # a worker whose environment names another registry
    elsewhere = nb.tmp / "elsewhere" / "registry.sqlite"
    monkeypatch.setenv("NBANK_REGISTRY", f"sqlite://{elsewhere}")
    NbankFileSystem.clear_instance_cache()
    clone = pickle.loads(blob)
    assert clone.registry.url == fs.registry.url
    assert clone.cat_file(name) == data
    with pickle.loads(opened) as f:
        assert f.read() == data
    assert not elsewhere.parent.exists()  # the worker's own setting was never used


def test_upath_without_warnings(nb: Nb) -> None:
    name, data, _ = _csv(nb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = UPath(f"nbank://{name}", **nb.options)
        assert isinstance(p, NbankPath) and p.name == name
        assert p.exists() and p.is_file()
        assert p.read_bytes() == data
        assert p.stat().st_size == len(data)
        NbankFileSystem.clear_instance_cache()
        from_env = UPath(f"nbank://{name}")  # NBANK_REGISTRY
        assert from_env.read_text() == data.decode()
        with from_env.open("rb") as f:
            assert pd.read_csv(f).shape == (3, 3)
        assert not UPath(f"nbank://{nb.name('nosuch')}").exists()
        new = UPath(f"nbank://{nb.name('via_upath')}", **nb.fs.storage_options)
        new.write_bytes(data + b"9,9,9\n")  # deposits
        assert nb.registered(new.name) and new.read_bytes().endswith(b"9,9,9\n")


def test_resolving_many_ids_in_bulk(nb: Nb) -> None:
    names = [nb.name(f"b{i}") for i in range(7)]
    for i, n in enumerate(names):
        nb.put(n, f"{i},{nb.uniq}\n".encode())
    missing = nb.name("nosuch")
    located = nb.fs.locate([f"nbank://{n}" for n in names] + [missing, "bad.id"])
    assert sorted(located) == sorted(names)
    contents = nb.fs.cat(names)
    assert contents == {n: f"{i},{nb.uniq}\n".encode() for i, n in enumerate(names)}
    out = nb.fs.cat([names[0], missing, "bad.id"], on_error="return")
    assert isinstance(out[missing], FileNotFoundError)
    assert isinstance(out["bad.id"], FileNotFoundError)
    assert list(nb.fs.cat([missing, names[1]], on_error="omit")) == [names[1]]
    with pytest.raises(FileNotFoundError, match="not registered"):
        nb.fs.cat([names[1], missing])


def test_text_mode_and_readers_that_take_file_objects(nb: Nb) -> None:
    name, data, df = _csv(nb)
    with fsspec.open(f"nbank://{name}", "rt", **nb.options) as f:
        assert f.read() == data.decode()
    with nb.fs.open(name, "rb") as f:
        pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(f.read())), df)


@pytest.mark.slow
def test_bulk_answers_are_remembered_from_when_they_arrive(nb: Nb) -> None:
    """A bulk resolve slower than the ttl still serves the reads that follow."""
    names = [nb.name(f"s{i}") for i in range(3)]
    for i, n in enumerate(names):
        nb.put(n, f"{i},{nb.uniq},slow\n".encode())
    fs = NbankFileSystem(registry=nb.archive.backend.url, ttl=1.0)
    real = fs.registry.locate_resources
    calls = []

    def slow(names_: list[str]) -> dict:
        calls.append(list(names_))
        time.sleep(1.2)  # longer than the ttl
        return real(names_)

    fs.registry.locate_resources = slow
    assert sorted(fs.locate(names)) == sorted(names)
    assert [fs.cat_file(n) for n in names] == [
        f"{i},{nb.uniq},slow\n".encode() for i in range(3)
    ]
    assert len(calls) == 1
