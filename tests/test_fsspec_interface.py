"""fsspec's interface as its own filesystems behave: exclusive writes, get into a
directory, caching layers, HDF5/NetCDF4 written through the handle, refusals that
explain immutability, times from the record, the core's id forms. On both
registries."""

from __future__ import annotations

import datetime as dt

import fsspec
import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fsspec_helpers import Nb, nb_fixture  # noqa: F401
from upath import UPath


def _put(nb: Nb, stem: str = "r") -> tuple[str, bytes]:
    name = nb.name(stem)
    data = f"x,tag\n1,{stem}{nb.uniq}\n".encode()
    nb.put(name, data)
    return name, data


def test_xb_refuses_an_existing_id_at_open(nb: Nb) -> None:
    name, data = _put(nb)
    with pytest.raises(FileExistsError, match="already registered"):
        nb.fs.open(f"nbank://{name}", "xb")
    assert nb.staging() == []  # refused before anything was staged
    with pytest.raises(FileExistsError):
        fsspec.open(f"nbank://{name}", "xb", **nb.fs.storage_options).open()
    with pytest.raises(FileExistsError):
        nb.fs.pipe_file(name, data, mode="create")
    new = nb.name("fresh")
    with nb.fs.open(f"nbank://{new}", "xb") as f:
        f.write(b"fresh " + nb.uniq.encode())
    assert nb.registered(new) and nb.staging() == []


def test_get_into_a_directory_puts_the_file_inside(nb: Nb) -> None:
    name, data = _put(nb)
    slash = nb.tmp / "new_dir"
    nb.fs.get(f"nbank://{name}", f"{slash}/")
    assert (slash / name).read_bytes() == data
    existing = nb.tmp / "existing"
    existing.mkdir()
    nb.fs.get(f"nbank://{name}.csv", str(existing))  # the written form is the name
    assert (existing / f"{name}.csv").read_bytes() == data
    nb.fs.get(name, str(nb.tmp / "as_file.csv"))
    assert (nb.tmp / "as_file.csv").read_bytes() == data
    other, other_data = _put(nb, "o")
    nb.fs.get([name, f"nbank://{other}"], f"{nb.tmp}/both/")
    assert (nb.tmp / "both" / other).read_bytes() == other_data


# fsspec's MMapCache (blockcache) never closes the file it maps: a ResourceWarning
# of fsspec's own, whatever the filesystem underneath
_MMAP_LEAK = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.mark.parametrize(
    "layer",
    [pytest.param("blockcache", marks=_MMAP_LEAK), "simplecache", "filecache"],
)
def test_caching_layers_read_and_close(nb: Nb, layer: str) -> None:
    name, data = _put(nb)
    url = f"{layer}::nbank://{name}"
    options = {"nbank": nb.options, layer: {"cache_storage": str(nb.tmp / layer)}}
    for _ in range(2):  # the second read is served from the cache's records
        with fsspec.open(url, "rb", **options) as f:
            assert f.read() == data
    assert pd.read_csv(url, storage_options=options).shape == (1, 2)


def test_the_write_handle_is_seekable_and_readable(nb: Nb) -> None:
    name = nb.name("rw")
    with nb.fs.open(f"nbank://{name}", "wb") as f:
        assert f.readable() and f.seekable() and f.writable()
        f.write(b"header--" + nb.uniq.encode())
        f.seek(0)
        assert f.read(6) == b"header"
        f.seek(6)
        f.write(b"::")
    assert nb.fs.cat_file(name) == b"header::" + nb.uniq.encode()


def test_netcdf4_and_hdf5_written_through_the_handle(nb: Nb) -> None:
    ds = xr.Dataset(
        {"rate": (("time",), np.arange(8.0) / 3)},
        coords={"time": np.arange(8)},
        attrs={"tag": nb.uniq},
    )
    nc = nb.name("nc")
    with nb.fs.open(f"nbank://{nc}.nc", "wb") as f:
        ds.to_netcdf(f, engine="h5netcdf")
    with nb.fs.open(nc) as f:
        xr.testing.assert_identical(xr.open_dataset(f, engine="h5netcdf").load(), ds)
    assert nb.fs.open_local(nc).endswith(".nc")
    h5 = nb.name("h5")
    with fsspec.open(f"nbank://{h5}.h5", "wb", **nb.fs.storage_options) as f:
        with h5py.File(f, "w") as out:
            out["spikes"] = np.arange(100, dtype="i4")
            out.attrs["tag"] = nb.uniq
    with nb.fs.open(h5) as f, h5py.File(f, "r") as back:
        assert back["spikes"][-1] == 99 and back.attrs["tag"] == nb.uniq
    # a failed HDF5 write deposits nothing
    bad = nb.name("h5bad")
    with pytest.raises(RuntimeError), nb.fs.open(f"nbank://{bad}", "wb") as f:
        with h5py.File(f, "w") as out:
            out["x"] = np.arange(3)
        raise RuntimeError("analysis failed")
    assert nb.nothing_of(bad)


def test_changing_a_resource_is_refused_saying_why(nb: Nb) -> None:
    name, data = _put(nb)
    other = nb.name("other")
    fs = nb.fs
    calls = {
        "rm": lambda: fs.rm(f"nbank://{name}"),
        "rm recursive": lambda: fs.rm(name, recursive=True),
        "rm_file": lambda: fs.rm_file(name),
        "delete": lambda: fs.delete(name),
        "rmdir": lambda: fs.rmdir(name),
        "mv": lambda: fs.mv(name, other),
        "rename": lambda: fs.rename(name, other),
        "copy": lambda: fs.copy(name, other),
        "cp_file": lambda: fs.cp_file(name, other),
        "UPath.unlink": lambda: UPath(f"nbank://{name}", **nb.options).unlink(),
        "UPath.rename": lambda: UPath(f"nbank://{name}", **nb.options).rename(
            f"nbank://{other}"
        ),
    }
    for label, call in calls.items():
        with pytest.raises(PermissionError, match="is refused") as err:
            call()
        message = str(err.value)
        assert "immutable" in message or "never change" in message, label
        assert "; " in message and message.split("; ")[-1][:4] in (
            "leav",
            "read",
        ), label
    assert fs.cat_file(name) == data and not nb.registered(other)


def test_modified_and_created_come_from_the_record(nb: Nb) -> None:
    name, _ = _put(nb)
    raw = nb.archive.registry.get_resource(name)["created_on"]
    when = nb.fs.modified(name)
    assert when == nb.fs.created(f"nbank://{name}") == nb.fs.info(name)["created"]
    assert when.tzinfo == dt.UTC
    assert when == dt.datetime.fromisoformat(raw).astimezone(dt.UTC)
    assert abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(minutes=10)
    assert UPath(f"nbank://{name}", **nb.options).fs.modified(name) == when
    with pytest.raises(FileNotFoundError):
        nb.fs.modified(nb.name("nosuch"))


def test_the_id_forms_of_every_engine(nb: Nb) -> None:
    name, data = _put(nb)
    forms = [
        name,
        f"nbank:{name}",
        f"nbank:/{name}",
        f"nbank://{name}",
        f"{name}.csv",
        f"nbank:{name}.csv",
        f"nbank://{name}.csv",
        f"http://host/neurobank/resources/{name}/",
    ]
    for form in forms:
        assert nb.fs.cat_file(form) == data, form
        assert nb.fs.exists(form) and nb.fs.info(form)["name"] == name, form
        with nb.fs.open(form) as f:
            assert f.read() == data, form
    assert pd.read_csv(f"nbank://{name}.csv", storage_options=nb.options).shape == (
        1,
        2,
    )
    assert UPath(f"nbank://{name}.csv", **nb.options).read_bytes() == data
    new = nb.name("written")
    nb.fs.pipe(f"nbank:{new}.csv", b"y\n" + nb.uniq.encode())
    assert [p.name for p in nb.archived(new)] == [f"{new}.csv"]
