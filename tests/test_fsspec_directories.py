"""Resources deposited as directories, through ``nbank://ID/inner/path``: reading,
listing, copying out, zarr stores; inner paths stay inside the resource. On both
registries."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from fsspec_helpers import Nb, nbd_fixture  # noqa: F401
from nbank_fsspec import NbankFileSystem


@pytest.fixture
def nb(nbd: Nb) -> Nb:
    """Every test here needs an archive that allows directory resources."""
    return nbd


def _tree(nb: Nb, name: str = "tree") -> Path:
    """A BIDS-like folder: a.txt, sub/b.csv, sub/deep/c.txt (content unique)."""
    src = nb.tmp / "src" / name
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "a.txt").write_text(f"A {nb.uniq}\n" if name == "tree" else name)
    (src / "sub" / "b.csv").write_text(f"x,tag\n1,u{nb.uniq}\n2,u{nb.uniq}\n")
    (src / "sub" / "deep" / "c.txt").write_text("CCC")
    return src


def test_reading_and_listing_inside_a_directory_resource(nb: Nb) -> None:
    name = nb.name("bids")
    nb.put_dir(name, _tree(nb))
    fs = nb.fs
    assert fs.cat_file(f"nbank://{name}/a.txt") == f"A {nb.uniq}\n".encode()
    assert fs.cat_file(f"{name}/sub/deep/c.txt", start=1) == b"CC"
    with fs.open(f"nbank:{name}/sub/deep/c.txt") as f:  # the core's id forms
        assert f.read() == b"CCC"
    df = pd.read_csv(f"nbank://{name}/sub/b.csv", storage_options=nb.options)
    assert df["x"].tolist() == [1, 2]
    assert fs.ls(name, detail=False) == [f"{name}/a.txt", f"{name}/sub"]
    assert fs.ls(f"nbank://{name}/sub/", detail=False) == [
        f"{name}/sub/b.csv",
        f"{name}/sub/deep",
    ]
    assert fs.ls(f"{name}/a.txt", detail=False) == [f"{name}/a.txt"]
    assert fs.find(name) == [
        f"{name}/a.txt",
        f"{name}/sub/b.csv",
        f"{name}/sub/deep/c.txt",
    ]
    assert fs.glob(f"{name}/**/*.txt") == [f"{name}/a.txt", f"{name}/sub/deep/c.txt"]
    assert fs.isdir(name) and fs.isdir(f"{name}/sub") and not fs.isfile(name)
    assert fs.isfile(f"{name}/a.txt") and not fs.isdir(f"{name}/a.txt")
    info = fs.info(f"{name}/sub/deep/c.txt")
    assert (info["name"], info["type"], info["size"]) == (
        f"{name}/sub/deep/c.txt",
        "file",
        3,
    )
    assert fs.info(name)["type"] == "directory" and fs.info(name)["sha1"]
    assert fs.du(name) == sum(len(fs.cat_file(p)) for p in fs.find(name))
    assert not fs.exists(f"{name}/nosuch") and fs.exists(f"{name}/sub/deep")
    with pytest.raises(FileNotFoundError, match="no such entry"):
        fs.cat_file(f"{name}/nosuch")
    with pytest.raises(IsADirectoryError):
        fs.cat_file(f"{name}/sub")
    # times are the resource's registration, inside it too
    created = fs.created(f"{name}/sub/b.csv")
    assert created == fs.modified(name) and created.tzinfo == dt.UTC
    # open_local gives the archived directory (or a file inside it)
    assert Path(fs.open_local(name)).is_dir()
    assert Path(fs.open_local(f"{name}/a.txt")).read_text() == f"A {nb.uniq}\n"


def test_get_recursive_copies_the_tree(nb: Nb) -> None:
    name = nb.name("copied")
    nb.put_dir(name, _tree(nb))
    new = nb.tmp / "new"
    nb.fs.get(f"nbank://{name}", str(new), recursive=True)
    files = sorted(str(p.relative_to(new)) for p in new.rglob("*") if p.is_file())
    assert files == ["a.txt", "sub/b.csv", "sub/deep/c.txt"]
    assert (new / "sub" / "deep" / "c.txt").read_bytes() == b"CCC"
    existing = nb.tmp / "existing"
    existing.mkdir()
    nb.fs.get(name, str(existing), recursive=True)  # lands inside, under its id
    assert (existing / name / "sub" / "b.csv").is_file()
    sub = nb.tmp / "sub_only"
    nb.fs.get(f"{name}/sub", str(sub), recursive=True)
    assert sorted(p.name for p in sub.rglob("*")) == ["b.csv", "c.txt", "deep"]
    # without recursive=True a directory is not copied (fsspec's rule)
    nb.fs.get(name, str(nb.tmp / "flat"))
    assert not (nb.tmp / "flat").exists()


def test_inner_paths_stay_inside_the_resource(nb: Nb) -> None:
    name = nb.name("confined")
    stored = nb.put_dir(name, _tree(nb))
    other = nb.put_dir(nb.name("other"), _tree(nb, "other_tree"))
    for bad in (
        f"{name}/../{other.name}/a.txt",
        f"{name}/sub/../../x",
        f"{name}/./a.txt",
    ):
        assert not nb.fs.exists(bad)
        with pytest.raises(FileNotFoundError, match="inside a resource"):
            nb.fs.cat_file(bad)
    # links planted in the archived directory after the deposit
    outside = nb.tmp / "secret.txt"
    outside.write_text("secret")
    os.chmod(stored, 0o755)
    (stored / "escape").symlink_to(outside)
    (stored / "sibling").symlink_to(other)  # another resource, same archive
    (stored / "inside").symlink_to(stored / "sub" / "deep")
    for link in ("escape", "sibling/a.txt"):
        with pytest.raises(OSError, match="symbolic link") as err:
            nb.fs.cat_file(f"{name}/{link}")
        assert not isinstance(err.value, FileNotFoundError)
    with pytest.raises(OSError, match="symbolic link"):
        nb.fs.ls(name)  # listing follows no link out either
    assert nb.fs.cat_file(f"{name}/inside/c.txt") == b"CCC"  # a link within: fine


def test_an_inner_path_of_a_file_resource_names_nothing(nb: Nb) -> None:
    name = nb.name("plain")
    nb.put(name, f"plain {nb.uniq}\n".encode())
    assert nb.fs.isfile(name) and not nb.fs.exists(f"{name}/x")
    with pytest.raises(FileNotFoundError):
        nb.fs.cat_file(f"{name}/x")


def test_a_directory_resource_not_mounted_here_says_where_it_is(nb: Nb) -> None:
    name = nb.name("away")
    nb.put_dir(name, _tree(nb))
    config = nb.archive.path / "nbank.json"
    config.rename(config.with_suffix(".away"))
    NbankFileSystem.clear_instance_cache()
    fs = NbankFileSystem(**nb.options)
    with pytest.raises(FileNotFoundError, match="no copy is on this host"):
        fs.cat_file(f"{name}/a.txt")
    assert not fs.exists(f"{name}/a.txt")


def test_a_zarr_store_opened_by_id(nb: Nb) -> None:
    ds = xr.Dataset(
        {"rate": (("trial", "bin"), np.arange(12.0).reshape(3, 4))},
        coords={"trial": np.arange(3)},
        attrs={"tag": nb.uniq},
    )
    src = nb.tmp / "src" / "store.zarr"
    ds.to_zarr(src, consolidated=False)
    name = nb.name("zstore")
    nb.put_dir(name, src)
    opened = xr.open_zarr(
        f"nbank://{name}", storage_options=nb.options, consolidated=False
    )
    xr.testing.assert_identical(opened.load(), ds)
    group = zarr.open_group(f"nbank://{name}", mode="r", storage_options=nb.options)
    assert group["rate"][1, 2] == 6.0
    mapped = zarr.open_group(nb.fs.get_mapper(name), mode="r")
    assert mapped.attrs["tag"] == nb.uniq
    with pytest.raises(PermissionError):
        zarr.open_group(f"nbank://{name}", mode="a", storage_options=nb.options)[
            "rate"
        ][0, 0] = 99.0
    assert (
        float(xr.open_zarr(nb.fs.get_mapper(name), consolidated=False).rate[0, 0])
        == 0.0
    )


def test_fsspec_open_files_expands_a_glob_inside_a_resource(nb: Nb) -> None:
    name = nb.name("globbed")
    nb.put_dir(name, _tree(nb))
    files = fsspec.open_files(f"nbank://{name}/**/*.txt", **nb.options)
    with files as opened:
        assert sorted(f.read() for f in opened) == [
            b"A " + nb.uniq.encode() + b"\n",
            b"CCC",
        ]
