"""Reading resources that are not mounted here from django-neurobank's download
endpoint (only a server can serve files, so these run on the HTTP registry only)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fsspec_helpers import make_downloadable
from nbank_fsspec import NbankFileSystem, RemoteFile
from servers import DjangoRegistry

from nbank_core import DepositItem, deposit, init_archive
from nbank_core.registry.http import HttpRegistry


@dataclasses.dataclass
class Served:
    fs: NbankFileSystem
    url: str
    files: dict[str, bytes]


@pytest.fixture(scope="module")
def served(
    django_registry: DjangoRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Resources of a downloadable datatype in an archive the server can read (under
    its sendfile root) and this client cannot (its nbank.json is moved away)."""
    uniq = uuid.uuid4().hex[:10]
    tmp_path = tmp_path_factory.mktemp("served")
    reg = HttpRegistry(django_registry.url, auth=django_registry.auth)
    root = django_registry.workdir / "sendfile" / f"arch-{uniq}"
    cfg = init_archive(root, registry=reg, name=f"srv-{uniq}")
    dtype = f"csvd-{uniq}"
    reg.add_datatype(dtype, "text/csv", "csv")
    make_downloadable(django_registry, dtype)
    df = pd.DataFrame(
        {"t": np.arange(40), "v": np.arange(40) / 7, "tag": f"u{uniq}"}
    )  # never read as a number
    ds = xr.Dataset({"v": (("t",), np.arange(4.0))}, attrs={"tag": uniq})
    files = {
        f"tab_{uniq}": df.to_csv(index=False).encode(),
        f"ds_{uniq}": ds.to_netcdf(engine="scipy"),
    }
    items = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        items.append(DepositItem(tmp_path / name, name=name))
    assert all(r.ok for r in deposit(cfg, items, dtype=dtype, registry=reg))
    (root / "nbank.json").rename(root / "nbank.json.away")  # not mounted here
    NbankFileSystem.clear_instance_cache()
    fs = NbankFileSystem(registry=django_registry.url)
    yield Served(fs, django_registry.url, files)
    NbankFileSystem.clear_instance_cache()
    reg.close()


def test_pandas_and_xarray_read_from_the_registry(served: Served) -> None:
    tab, ds = served.files
    got = pd.read_csv(f"nbank://{tab}", storage_options={"registry": served.url})
    assert got.to_csv(index=False).encode() == served.files[tab]
    with served.fs.open(ds) as f:
        assert isinstance(f, RemoteFile)
        opened = xr.open_dataset(f, engine="scipy").load()
    assert opened.attrs["tag"] == ds.split("_", 1)[1]
    assert list(opened["v"].values) == [0.0, 1.0, 2.0, 3.0]


def test_info_and_exists_say_where_the_bytes_come_from(served: Served) -> None:
    tab = next(iter(served.files))
    info = served.fs.info(tab)
    assert info["local_path"] is None
    assert info["url"] == f"{served.url}download/{tab}/"
    assert info["size"] == len(served.files[tab])
    assert served.fs.exists(tab)


def test_ranged_reads_over_http(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    tab = next(iter(served.files))
    data = served.files[tab]
    fs = served.fs
    assert fs.cat_file(tab, start=10, end=30) == data[10:30]
    assert fs.cat_file(tab, start=-9) == data[-9:]
    assert fs.cat_file(tab, start=4, end=-4) == data[4:-4]
    # a file too large to read whole is fetched block by block
    monkeypatch.setattr("nbank_fsspec.reading.SMALL", 0)
    with fs.open(tab, block_size=64, cache_type="bytes") as f:
        f.seek(100)
        assert f.read(50) == data[100:150]
        f.seek(-20, 2)
        assert f.read() == data[-20:]
        f.seek(0)
        assert f.read() == data


def test_open_local_refuses_a_file_that_is_not_here(served: Served) -> None:
    tab = next(iter(served.files))
    with pytest.raises(FileNotFoundError, match="no copy is on this host"):
        served.fs.open_local(tab)
    with pytest.raises(AttributeError, match="has no local path"):
        fsspec.open_local(f"nbank://{tab}", registry=served.url)
