"""fsspec's own abstract test suite (``fsspec.tests.abstract``) run against
``nbank://``, as fsspec's memory and local filesystems run it: one subclass per
suite with the fixtures the suite asks for.

The remote trees the suite reads (``source/...``) are directory resources: each
scenario is built on local disk with the suite's own builder and deposited whole
under a fresh id, so ``fs_join(fs_path, "source")`` is ``<id>/source``. What
cannot apply is skipped with its reason, never silently:

- writing at a path inside a directory (``put`` to ``target/...``): ids are flat,
  a resource is written under an id alone and a directory resource is deposited
  whole;
- ``copy``: refused, as resources are immutable and the registry keeps one id per
  content (see :mod:`nbank_fsspec.immutable`);
- ``pipe_file(..., mode="overwrite")`` of different bytes: refused (immutable).

The suite runs on the embedded registry: it checks fsspec's path semantics, which
do not depend on the registry (both registries are covered by the other tests).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)
from nbank_fsspec import NbankFileSystem

from nbank_core import DepositItem, add_datatype, deposit, init_archive, open_registry

FLAT_IDS = (
    "not applicable, flat ids: the test writes at paths inside a directory "
    "(target/...), but a resource is written under an id alone (nbank://ID) and a "
    "directory resource is deposited whole"
)
IMMUTABLE_COPY = (
    "not applicable, immutability: copy is refused (resources never change and "
    "the registry keeps one id per content); see test_copy_is_refused"
)
IMMUTABLE_OVERWRITE = (
    "not applicable, immutability: its last step overwrites a resource with "
    "different bytes, which is refused; its other steps run in "
    "test_pipe_exclusive_until_overwrite"
)


class NbankFixtures(AbstractFixtures):
    """The suite's fixtures on a fresh embedded registry and archive per class."""

    @pytest.fixture(scope="class")
    @classmethod
    def _site(
        cls, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[dict[str, Any]]:
        tmp = tmp_path_factory.mktemp("abstract")
        url = "sqlite://" + str(tmp / "registry.sqlite")
        cfg = init_archive(tmp / "archive", registry=url, allow_directories=True)
        add_datatype("blob", "application/octet-stream", registry=url)
        NbankFileSystem.clear_instance_cache()
        fs = fsspec.filesystem("nbank", registry=url, archive=cfg.path, dtype="blob")
        yield {"tmp": tmp, "url": url, "cfg": cfg, "fs": fs, "made": {}}
        NbankFileSystem.clear_instance_cache()

    def _scenario(self, site: dict[str, Any], builder: Any) -> str:
        """``<id>/source``: the scenario ``builder`` makes, deposited once per class
        as a directory resource."""
        made = site["made"]
        if builder.__name__ not in made:
            ident = f"scn_{uuid.uuid4().hex[:12]}"
            root = site["tmp"] / "scenarios" / ident
            builder(LocalFileSystem(auto_mkdir=True), os.path.join, str(root))
            root.mkdir(parents=True, exist_ok=True)
            with open_registry(site["url"]) as reg:
                (result,) = deposit(
                    site["cfg"],
                    [DepositItem(root, name=ident)],
                    dtype="blob",
                    registry=reg,
                )
            assert result.ok, result.error
            made[builder.__name__] = f"{ident}/source"
        return made[builder.__name__]

    @pytest.fixture
    def fs(self, _site: dict[str, Any]) -> NbankFileSystem:
        return _site["fs"]

    @pytest.fixture
    def fs_path(self) -> str:
        return ""

    @pytest.fixture
    def fs_target(self) -> str:
        """A fresh id (the suite's default, ``<fs_path>/target``, is a path inside
        a directory, which ids are not)."""
        return f"target_{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def fs_bulk_operations_scenario_0(self, _site: dict[str, Any]) -> str:
        return self._scenario(_site, self._bulk_operations_scenario_0)

    @pytest.fixture
    def fs_glob_edge_cases_files(self, _site: dict[str, Any]) -> str:
        return self._scenario(_site, self._glob_edge_cases_files)

    @pytest.fixture
    def fs_dir_and_file_with_same_name_prefix(self, _site: dict[str, Any]) -> str:
        return self._scenario(_site, self._dir_and_file_with_same_name_prefix)

    @pytest.fixture
    def fs_10_files_with_hashed_names(self, _site: dict[str, Any]) -> str:
        return self._scenario(_site, self._10_files_with_hashed_names)


def _skipping(base: type, reason: str) -> dict[str, Any]:
    """Every test of ``base``, skipped with ``reason``."""

    def skipped(self: Any) -> None:
        pytest.skip(reason)

    return {
        name: pytest.mark.skip(reason=reason)(skipped)
        for name in dir(base)
        if name.startswith("test_")
    }


class TestNbankGet(AbstractGetTests, NbankFixtures):
    """Applies in full: every source tree is a directory resource."""

    def test_get_directory_recursive(
        self, fs, fs_join, fs_path, local_fs, local_join, local_target, _site
    ):
        """The suite's test, whose source (``src/file``) is made by writing on the
        filesystem: here ``src`` is a directory resource holding ``file``, got by
        its id; the assertions are the suite's."""
        src = self._scenario(_site, _src_with_file).removesuffix("/source")
        target = local_target
        assert not local_fs.exists(target)
        for loop in range(2):
            fs.get(src, target, recursive=True)
            assert local_fs.isdir(target)
            assert local_fs.isfile(local_join(target, "file"))
            if loop == 0:
                assert not local_fs.exists(local_join(target, src))
            else:  # into the existing directory, under its name
                assert local_fs.isfile(local_join(target, src, "file"))
        local_fs.rm(target, recursive=True)
        assert not local_fs.exists(target)
        for _ in range(2):
            fs.get(src + "/", target, recursive=True)
            assert local_fs.isdir(target)
            assert local_fs.isfile(local_join(target, "file"))
            assert not local_fs.exists(local_join(target, src))


def _src_with_file(some_fs: Any, some_join: Any, some_path: str) -> None:
    """A directory resource holding one file (its id stands for the suite's
    ``src``)."""
    some_fs.pipe(some_join(some_path, "file"), some_path.encode())


class TestNbankOpen(AbstractOpenTests, NbankFixtures):
    """Applies in full: 'xb' on a registered id raises FileExistsError at open."""


class TestNbankPipe(AbstractPipeTests, NbankFixtures):
    locals().update(_skipping(AbstractPipeTests, IMMUTABLE_OVERWRITE))

    def test_pipe_exclusive_until_overwrite(
        self, fs: NbankFileSystem, fs_target: str
    ) -> None:
        """The suite's test_pipe_exclusive, with the refusal of its last step."""
        fs.pipe_file(fs_target, b"data")
        assert fs.cat_file(fs_target) == b"data"
        with pytest.raises(FileExistsError):
            fs.pipe_file(fs_target, b"data", mode="create")
        fs.pipe_file(fs_target, b"data", mode="overwrite")  # the same bytes: fine
        with pytest.raises(FileExistsError, match="different content"):
            fs.pipe_file(fs_target, b"new data", mode="overwrite")
        assert fs.cat_file(fs_target) == b"data"


class TestNbankPut(AbstractPutTests, NbankFixtures):
    locals().update(_skipping(AbstractPutTests, FLAT_IDS))

    def test_put_file_to_a_new_id(
        self, fs: NbankFileSystem, fs_target: str, tmp_path: Any
    ) -> None:
        """What put can do: a local file deposited under a new id."""
        src = tmp_path / "file1"
        src.write_bytes(b"put " + fs_target.encode())
        fs.put(str(src), f"nbank://{fs_target}")
        assert fs.cat_file(fs_target) == src.read_bytes()


class TestNbankCopy(AbstractCopyTests, NbankFixtures):
    locals().update(_skipping(AbstractCopyTests, IMMUTABLE_COPY))

    def test_copy_is_refused(
        self, fs: NbankFileSystem, fs_bulk_operations_scenario_0: str, fs_target: str
    ) -> None:
        source = f"{fs_bulk_operations_scenario_0}/file1"
        for call in (fs.copy, fs.cp_file, fs.cp):
            with pytest.raises(PermissionError, match="one id per content"):
                call(source, fs_target)
        assert not fs.exists(fs_target)
