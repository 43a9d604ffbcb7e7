"""Shared fixtures; helpers that start servers live in tests/servers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import DjangoRegistry, start_django_registry

from nbank_core.registry.http import HttpRegistry


@pytest.fixture(scope="session")
def django_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DjangoRegistry]:
    """A real django-neurobank (gunicorn, SQLite, page size 3) shared by the session."""
    with start_django_registry(
        tmp_path_factory.mktemp("django-registry"), page_size=3
    ) as server:
        yield server


@pytest.fixture
def http_registry(django_registry: DjangoRegistry) -> Iterator[HttpRegistry]:
    """An HttpRegistry on the session's server, with the superuser's credentials."""
    with HttpRegistry(django_registry.url, auth=django_registry.auth) as registry:
        yield registry


# -- both registries: the embedded default and a real django-neurobank ------------
import dataclasses  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from nbank_core import ArchiveConfig, init_archive  # noqa: E402
from nbank_core.registry import Registry, open_registry  # noqa: E402


@dataclasses.dataclass
class Backend:
    """A registry the tests can reach: its URL, credentials and an env for commands."""

    kind: str
    url: str
    auth: tuple[str, str] | None

    def open(self) -> Registry:
        return open_registry(self.url, auth=self.auth, create=True)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point a subprocess (nbank, snakemake, luigi)
        at this registry."""
        env = {"NBANK_REGISTRY": self.url}
        if self.auth:
            env["NBANK_AUTH"] = ":".join(self.auth)
        return env


@pytest.fixture
def uniq() -> str:
    """A suffix that keeps names unique on the session-wide server."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(params=["sqlite", "http"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test that takes this runs twice: embedded registry and django-neurobank."""
    if request.param == "sqlite":
        return Backend("sqlite", "sqlite://" + str(tmp_path / "registry.sqlite"), None)
    server = request.getfixturevalue("django_registry")
    return Backend("http", server.url, server.auth)


@pytest.fixture
def registry(backend: Backend) -> Iterator[Registry]:
    with backend.open() as reg:
        yield reg


@dataclasses.dataclass
class Archive:
    """A registered archive for a test: its config, a datatype, its registry."""

    cfg: ArchiveConfig
    dtype: str
    backend: Backend
    registry: Registry

    @property
    def path(self) -> Path:
        return self.cfg.path


@pytest.fixture
def archive(backend: Backend, registry: Registry, tmp_path: Path, uniq: str) -> Archive:
    """A fresh archive registered in the backend, with the datatype ``txt-<uniq>``."""
    cfg = init_archive(tmp_path / "archive", registry=registry, name=f"arch-{uniq}")
    dtype = f"txt-{uniq}"
    registry.add_datatype(dtype, "text/plain")
    return Archive(cfg, dtype, backend, registry)
