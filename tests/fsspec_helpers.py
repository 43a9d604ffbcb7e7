"""Fixtures and helpers for the ``nbank://`` filesystem tests (imported by them)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from nbank_fsspec import NbankFileSystem
from servers import SITE_PACKAGE, DjangoRegistry

from nbank_core import DepositItem, deposit, init_archive


@dataclasses.dataclass
class Nb:
    """A test's view of one archive through ``nbank://``: the filesystem (with the
    archive and datatype for writes), the storage options that name the registry,
    and ways to look behind the filesystem's back."""

    fs: NbankFileSystem
    archive: Any  # conftest's Archive
    options: dict[str, Any]
    uniq: str
    tmp: Path

    def name(self, stem: str) -> str:
        """A resource id unique on the session-wide server."""
        return f"{stem}_{self.uniq}"

    def put(self, name: str, data: bytes, suffix: str = ".csv") -> Path:
        """Deposits ``data`` under ``name`` with the core API (not the filesystem)
        and returns the archived file."""
        src = self.tmp / "src" / f"{name}{suffix}"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        (result,) = deposit(
            self.archive.path,
            [DepositItem(src, name=name)],
            dtype=self.archive.dtype,
            registry=self.archive.registry,
        )
        assert result.ok, result.error
        return result.path

    def put_dir(self, name: str, src: Path) -> Path:
        """Deposits the directory ``src`` under ``name`` (the archive must allow
        directories) and returns the archived directory."""
        (result,) = deposit(
            self.archive.path,
            [DepositItem(src, name=name)],
            dtype=self.archive.dtype,
            registry=self.archive.registry,
        )
        assert result.ok, result.error
        return result.path

    def registered(self, name: str) -> bool:
        return name in self.archive.registry.get_resources([name])

    def archived(self, name: str) -> list[Path]:
        """Files stored for ``name`` in the archive."""
        return sorted(self.archive.cfg.shard_dir(name).glob(f"{name}*"))

    def staging(self) -> list[Path]:
        return sorted(
            p for p in self.archive.cfg.staging_dir.iterdir() if p.name != ".journal"
        )

    def nothing_of(self, name: str) -> bool:
        """No record, no archived file and nothing in staging."""
        return (
            not self.registered(name)
            and not self.archived(name)
            and not (self.staging())
        )


@pytest.fixture(name="nb")
def nb_fixture(
    archive, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uniq: str
) -> Iterator[Nb]:
    """``nbank://`` on the test's archive; ``NBANK_REGISTRY`` (and ``NBANK_AUTH``)
    name its registry, so plain ``pd.read_csv("nbank://id")`` works too."""
    yield from _nb(archive, monkeypatch, tmp_path, uniq)


@dataclasses.dataclass
class DirArchive:
    """An archive that allows directory resources (the shape of conftest's
    ``Archive``), with a datatype ``dir-<uniq>`` for them."""

    cfg: Any
    dtype: str
    backend: Any
    registry: Any

    @property
    def path(self) -> Path:
        return self.cfg.path


@pytest.fixture(name="nbd")
def nbd_fixture(
    backend, registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uniq: str
) -> Iterator[Nb]:
    """As ``nb``, on an archive with ``allow_directories``: ``nb.put_dir``."""
    cfg = init_archive(
        tmp_path / "archive",
        registry=registry,
        name=f"dirs-{uniq}",
        allow_directories=True,
    )
    dtype = f"dir-{uniq}"
    registry.add_datatype(dtype, "application/x-directory")
    yield from _nb(
        DirArchive(cfg, dtype, backend, registry), monkeypatch, tmp_path, uniq
    )


def _nb(
    archive: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uniq: str
) -> Iterator[Nb]:
    backend = archive.backend
    for key, value in backend.env.items():
        monkeypatch.setenv(key, value)
    NbankFileSystem.clear_instance_cache()
    options = {"registry": backend.url}
    fs = fsspec.filesystem(
        "nbank",
        **options,
        auth=backend.auth,
        archive=str(archive.path),
        dtype=archive.dtype,
    )
    yield Nb(fs, archive, options, uniq, tmp_path)
    NbankFileSystem.clear_instance_cache()


def django_shell(server: DjangoRegistry, code: str) -> None:
    """Runs ``code`` in the server's Django site (what its administrator would do
    in the admin or a shell)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(server.workdir),
        "DJANGO_SETTINGS_MODULE": f"{SITE_PACKAGE}.settings",
    }
    subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", code],
        env=env,
        check=True,
        capture_output=True,
    )


def make_downloadable(server: DjangoRegistry, dtype: str) -> None:
    """Marks a datatype downloadable: django-neurobank's API cannot set that flag."""
    django_shell(
        server,
        "from nbank_registry.models import DataType; "
        f"DataType.objects.filter(name={dtype!r}).update(downloadable=True)",
    )
