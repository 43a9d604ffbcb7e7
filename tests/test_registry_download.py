"""Downloads through the Registry contract: django-neurobank serves the files of
downloadable datatypes; an embedded registry serves none (NotFound)."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsspec_helpers import make_downloadable
from servers import DjangoRegistry, free_port

from nbank_core import DepositItem, IntegrityError, NotFound, deposit, init_archive
from nbank_core.registry import open_registry
from nbank_core.registry.http import HttpRegistry


@dataclasses.dataclass
class Served:
    url: str
    name: str  # a resource the server serves
    data: bytes
    plain: str  # a resource of a datatype that is not downloadable


@pytest.fixture(scope="module")
def served(
    django_registry: DjangoRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    uniq = uuid.uuid4().hex[:10]
    tmp = tmp_path_factory.mktemp("download")
    with HttpRegistry(django_registry.url, auth=django_registry.auth) as reg:
        root = django_registry.workdir / "sendfile" / f"dl-{uniq}"
        cfg = init_archive(root, registry=reg, name=f"dl-{uniq}")
        served, plain = f"bin-{uniq}", f"plain-{uniq}"
        reg.add_datatype(served, "application/octet-stream", "bin")
        reg.add_datatype(plain, "application/octet-stream", "bin")
        make_downloadable(django_registry, served)
        data = uuid.uuid4().bytes * 40_000  # 640 kB: several blocks
        names = {}
        for dtype, content in ((served, data), (plain, data[::-1])):
            src = tmp / f"{dtype}.bin"
            src.write_bytes(content)
            (r,) = deposit(
                cfg, [DepositItem(src, name=dtype)], dtype=dtype, registry=reg
            )
            assert r.ok, r.error
            names[dtype] = r.id
    yield Served(django_registry.url, names[served], data, names[plain])


@pytest.fixture
def anonymous(served: Served) -> Iterator[HttpRegistry]:
    # wrong credentials: had they been sent, the server would answer 401
    with HttpRegistry(served.url, auth=("nobody", "wrong")) as reg:
        yield reg


def test_size_and_ranges(served: Served, anonymous: HttpRegistry) -> None:
    data = served.data
    assert anonymous.serves_downloads
    assert anonymous.download_size(served.name) == len(data)
    assert anonymous.read_download(served.name) == data
    assert anonymous.read_download(served.name, 10, 30) == data[10:30]
    start = len(data) - 5000
    assert anonymous.read_download(served.name, start) == data[start:]
    assert anonymous.read_download(served.name, 7, 7) == b""
    with pytest.raises(ValueError):
        anonymous.read_download(served.name, -3)


def test_download_is_atomic_and_checked(
    served: Served, anonymous: HttpRegistry, tmp_path: Path
) -> None:
    sha1 = hashlib.sha1(served.data).hexdigest()
    dest = tmp_path / "out.bin"
    assert anonymous.download(served.name, dest, sha1=f"sha1:{sha1}") == dest
    assert dest.read_bytes() == served.data
    dest.write_bytes(b"old")
    with pytest.raises(IntegrityError, match="does not match"):
        anonymous.download(served.name, dest, sha1="0" * 40)
    assert dest.read_bytes() == b"old"  # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temp


def test_what_is_not_served_is_not_found(
    served: Served, anonymous: HttpRegistry, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match="not downloadable"):
        anonymous.read_download(served.plain)
    with pytest.raises(NotFound, match="not registered"):
        anonymous.download_size(f"nosuch-{served.name}")
    with pytest.raises(NotFound, match="not downloadable"):
        anonymous.download(served.plain, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_a_registry_that_is_down_is_retried_then_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("nbank_core.registry.http.RETRY_DELAYS", (0.0, 0.0))
    with HttpRegistry(f"http://127.0.0.1:{free_port()}/neurobank/") as reg:
        with pytest.raises(ConnectionError, match="cannot reach the registry"):
            reg.download_size("st32_1")


def test_an_embedded_registry_serves_no_downloads(tmp_path: Path) -> None:
    with open_registry("sqlite://" + str(tmp_path / "r.sqlite"), create=True) as reg:
        assert not reg.serves_downloads
        for call in (
            lambda: reg.download_size("st32_1"),
            lambda: reg.read_download("st32_1", 0, 4),
            lambda: reg.download("st32_1", tmp_path / "out"),
        ):
            with pytest.raises(NotFound, match="embedded registry"):
                call()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))]
