"""A benchmark-only Snakemake storage plugin that does the least any archive
plugin must: ``linkfloor:NAME`` is the file ``$LINKFLOOR_ROOT/NAME``; inputs are
symlinked, outputs hard-linked, existence and sizes are one ``stat``. It
measures what Snakemake's storage machinery itself costs per job, so that
``bench_snakemake_jobs.py`` can show how much of nbank's overhead is nbank's.
Not installed; the benchmark puts its directory on ``PYTHONPATH``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from snakemake_interface_storage_plugins.common import Operation
from snakemake_interface_storage_plugins.io import IOCacheStorageInterface
from snakemake_interface_storage_plugins.storage_object import (
    StorageObjectRead,
    StorageObjectWrite,
)
from snakemake_interface_storage_plugins.storage_provider import (
    ExampleQuery,
    QueryType,
    StorageProviderBase,
    StorageQueryValidationResult,
)

_NO_LIMIT = contextlib.nullcontext()


class StorageProvider(StorageProviderBase):
    @classmethod
    def example_queries(cls) -> list[ExampleQuery]:
        return [ExampleQuery("linkfloor:a.txt", "a file", QueryType.ANY)]

    def rate_limiter_key(self, query: str, operation: Operation) -> Any:
        return None

    def default_max_requests_per_second(self) -> float:
        return 100.0

    def use_rate_limiter(self) -> bool:
        return False

    def rate_limiter(self, query: str, operation: Operation) -> Any:
        return _NO_LIMIT

    @classmethod
    def is_valid_query(cls, query: str) -> StorageQueryValidationResult:
        ok = query.startswith("linkfloor:")
        return StorageQueryValidationResult(query=query, valid=ok, reason=None)


class StorageObject(StorageObjectRead, StorageObjectWrite):
    def __post_init__(self) -> None:
        self.name = self.query.split(":", 1)[1]
        self.stored = Path(os.environ["LINKFLOOR_ROOT"]) / self.name

    async def inventory(self, cache: IOCacheStorageInterface) -> None:
        pass

    def get_inventory_parent(self) -> str | None:
        return None

    def local_suffix(self) -> str:
        return self.name

    def cleanup(self) -> None:
        pass

    def exists(self) -> bool:
        return os.path.exists(self.stored)

    def mtime(self) -> float:
        return os.stat(self.stored).st_mtime

    def size(self) -> int:
        return os.stat(self.stored).st_size

    def retrieve_object(self) -> None:
        local = self.local_path()
        with contextlib.suppress(FileNotFoundError):
            local.unlink()
        os.symlink(self.stored, local)

    def store_object(self) -> None:
        self.stored.parent.mkdir(parents=True, exist_ok=True)
        os.link(self.local_path(), self.stored)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.stored.unlink()
