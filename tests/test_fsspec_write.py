"""Writing through ``nbank://``: deposits happen on commit only, an exception in the
block publishes nothing, resources are immutable; on both registries."""

from __future__ import annotations

import gc
import hashlib

import fsspec
import pandas as pd
import pytest
from fsspec_helpers import Nb, nb_fixture  # noqa: F401
from nbank_fsspec import NbankFileSystem
from servers import free_port


class Boom(Exception):
    """Raised inside a write block by the tests."""


def _data(nb: Nb, label: str) -> bytes:
    return f"{label},{nb.uniq}\n".encode() * 20


def _assert_deposited(nb: Nb, name: str, data: bytes) -> None:
    record = nb.archive.registry.get_resource(name)
    assert record["sha1"] == hashlib.sha1(data).hexdigest()
    assert record["dtype"] == nb.archive.dtype
    (path,) = nb.archived(name)
    assert path.read_bytes() == data
    assert nb.staging() == []


def test_transaction_deposits_at_commit(nb: Nb) -> None:
    a, b = nb.name("ta"), nb.name("tb")
    da, db = _data(nb, "a"), _data(nb, "b")
    with nb.fs.transaction:
        nb.fs.pipe(f"nbank://{a}", da)
        with nb.fs.open(f"nbank://{b}", "wb", metadata={"site": "L2"}) as f:
            f.write(db)
        # nothing is published before the block ends
        assert not nb.registered(a) and not nb.registered(b)
        assert nb.archived(a) == [] and not nb.fs.exists(a)
    _assert_deposited(nb, a, da)
    _assert_deposited(nb, b, db)
    assert nb.fs.cat_file(a) == da  # readable at once: nothing cached as missing
    assert nb.archive.registry.get_resource(b)["metadata"]["site"] == "L2"


def test_an_exception_in_a_transaction_deposits_nothing(nb: Nb) -> None:
    a, b = nb.name("xa"), nb.name("xb")
    with pytest.raises(Boom), nb.fs.transaction:
        nb.fs.pipe(f"nbank://{a}", _data(nb, "a"))
        with nb.fs.open(f"nbank://{b}", "wb") as f:
            f.write(_data(nb, "b"))
        raise Boom
    assert nb.nothing_of(a) and nb.nothing_of(b)
    assert not nb.fs._intrans  # the filesystem is usable again
    nb.fs.pipe(f"nbank://{a}", _data(nb, "a"))
    _assert_deposited(nb, a, _data(nb, "a"))


@pytest.mark.parametrize("mode", ["wb", "w"])
def test_an_exception_in_an_fsspec_open_block_deposits_nothing(nb: Nb, mode) -> None:
    name = nb.name("ab")
    payload = _data(nb, "partial")
    with (
        pytest.raises(Boom),
        fsspec.open(f"nbank://{name}", mode, **nb.fs.storage_options) as f,
    ):
        f.write(payload if "b" in mode else payload.decode())
        raise Boom
    assert nb.nothing_of(name)
    with pytest.raises(Boom), nb.fs.open(f"nbank://{name}", mode) as f:
        f.write(payload if "b" in mode else payload.decode())
        raise Boom
    assert nb.nothing_of(name)


def test_fsspec_open_deposits_on_close(nb: Nb) -> None:
    name = nb.name("ok")
    data = _data(nb, "ok")
    with fsspec.open(f"nbank://{name}", "wb", **nb.fs.storage_options) as f:
        f.write(data)
    _assert_deposited(nb, name, data)


def test_pandas_writes_and_reads_back(nb: Nb) -> None:
    name = nb.name("df")
    df = pd.DataFrame({"x": [1, 2, 3], "tag": f"u{nb.uniq}"})
    df.to_csv(f"nbank://{name}", index=False, storage_options=nb.fs.storage_options)
    pd.testing.assert_frame_equal(pd.read_csv(f"nbank://{name}"), df)
    assert nb.staging() == []


def test_a_write_inside_an_except_block_still_deposits(nb: Nb) -> None:
    """The exception already being handled when the file is opened is not the
    block's: the file is deposited."""
    name = nb.name("in_except")
    data = _data(nb, "exc")
    try:
        raise KeyError("handled elsewhere")
    except KeyError:
        with fsspec.open(f"nbank://{name}", "wb", **nb.fs.storage_options) as f:
            f.write(data)
    _assert_deposited(nb, name, data)


def test_same_content_is_idempotent_different_content_refused(nb: Nb) -> None:
    name = nb.name("imm")
    data = _data(nb, "first")
    nb.fs.pipe(f"nbank://{name}", data)
    nb.fs.pipe(f"nbank://{name}", data)  # the same bytes again: fine
    _assert_deposited(nb, name, data)
    with pytest.raises(FileExistsError, match="different content"):
        nb.fs.pipe(f"nbank://{name}", _data(nb, "second"))
    with pytest.raises(FileExistsError):
        nb.fs.pipe_file(f"nbank://{name}", data, mode="create")
    with pytest.raises(FileExistsError), nb.fs.transaction:
        nb.fs.pipe(f"nbank://{name}", _data(nb, "third"))
    _assert_deposited(nb, name, data)  # unchanged, and no leftovers


def test_a_file_never_closed_is_discarded(nb: Nb) -> None:
    name = nb.name("lost")
    f = nb.fs.open(f"nbank://{name}", "wb")
    f.write(_data(nb, "lost"))
    assert len(nb.staging()) == 1
    del f
    gc.collect()
    assert nb.nothing_of(name)


def test_writes_refused_without_archive_or_dtype_or_for_bad_ids(nb: Nb) -> None:
    reader = NbankFileSystem(registry=nb.archive.backend.url)
    with pytest.raises(ValueError, match="needs an archive"):
        reader.pipe(f"nbank://{nb.name('na')}", b"x")
    no_dtype = NbankFileSystem(registry=nb.archive.backend.url, archive=nb.archive.path)
    with pytest.raises(ValueError, match="needs a datatype"):
        no_dtype.pipe(f"nbank://{nb.name('nd')}", b"x")
    with pytest.raises(FileNotFoundError, match="dtype"):
        nb.fs.pipe(f"nbank://{nb.name('nd')}", b"x", dtype="no-such-dtype")
    with pytest.raises(ValueError, match="invalid query"):
        nb.fs.pipe("nbank://a.b.c", b"x")
    with pytest.raises(PermissionError, match="nothing is added to or changed inside"):
        nb.fs.pipe("nbank://a/b", b"x")
    with pytest.raises(ValueError, match="give one of them"):
        nb.fs.pipe(f"nbank://{nb.name('ex')}.csv", b"x", suffix=".txt")
    with pytest.raises(ValueError, match="invalid suffix"):
        nb.fs.pipe(f"nbank://{nb.name('sx')}", b"x", suffix="/../../x")
    with pytest.raises(ValueError, match="not supported"):
        nb.fs.open(nb.name("ap"), "ab")
    assert nb.staging() == []


@pytest.mark.slow
def test_a_registry_down_at_commit_leaves_nothing(nb: Nb) -> None:
    config = nb.archive.path / "nbank.json"
    down = f"http://127.0.0.1:{free_port()}/neurobank/"
    config.write_text(config.read_text().replace(nb.archive.backend.url, down))
    fs = NbankFileSystem(archive=nb.archive.path, dtype=nb.archive.dtype)
    assert fs.registry.url == down  # the archive's registry, whatever the env says
    name = nb.name("down")
    with pytest.raises(ConnectionError):  # suffix given: fails at the deposit
        fs.pipe(f"nbank://{name}", _data(nb, "down"), suffix=".csv")
    assert nb.nothing_of(name)
