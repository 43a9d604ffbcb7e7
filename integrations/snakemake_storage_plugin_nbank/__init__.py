"""Snakemake storage plugin ``nbank``: inputs by identifier, outputs deposited.

In a Snakefile::

    storage:
        provider="nbank", archive="/data/archive", dtype="spike-times"

    rule spikes:
        input:  storage.nbank("nbank:{unit}.pcm")
        output: storage.nbank("nbank://{unit}_spikes.csv")
        shell:  "sort-spikes {input} > {output}"

Inputs are looked up in the registry in bulk and linked (not copied) from the
archive into Snakemake's local storage prefix. Outputs are deposited into
``archive`` through nbank_core's deposit, with provenance metadata (see
:mod:`._provenance`). Settings are also flags (``--storage-nbank-archive``) and,
for the registry and credentials, environment variables
(``SNAKEMAKE_STORAGE_NBANK_REGISTRY``, ``..._AUTH``, or nbank's own
``NBANK_REGISTRY`` / ``NBANK_AUTH``). Without a registry, the archive's registry is
used, else the embedded default.

>>> StorageProvider.is_valid_query("nbank:{unit}_spikes.csv").valid
True
>>> StorageProvider.is_valid_query("nbank://a/b").valid
False
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_storage_plugins.common import Operation
from snakemake_interface_storage_plugins.io import IOCacheStorageInterface, Mtime
from snakemake_interface_storage_plugins.settings import StorageProviderSettingsBase
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

from nbank_core import (
    ArchiveConfig,
    DepositItem,
    Located,
    NbankError,
    NotFound,
    Registry,
    Resolver,
    Settings,
    deposit,
    read_config,
    withdraw,
)

from . import _query
from ._lookup import Lookup
from ._provenance import JobIndex
from ._remove import check_allowed
from ._support import edge, is_dir, json_object, past, setting, stat_or_none

__all__ = ["StorageObject", "StorageProvider", "StorageProviderSettings"]


def _help(text: str, env_var: bool = False) -> dict[str, Any]:
    return {"help": text, "env_var": env_var, "required": False}


@dataclasses.dataclass
class StorageProviderSettings(StorageProviderSettingsBase):
    """Settings of the ``nbank`` provider; strings only (Snakemake passes them to
    remote jobs as flags, where booleans break)."""

    registry: str | None = dataclasses.field(
        default=None,
        metadata=_help(
            "Registry URL (http(s)://host/neurobank/ or sqlite:///path). Default: "
            "$NBANK_REGISTRY, else the archive's registry, else the embedded one.",
            env_var=True,
        ),
    )
    auth: str | None = dataclasses.field(
        default=None,
        repr=False,
        metadata=_help(
            "Registry credentials as user:password (default: $NBANK_AUTH, then "
            "~/.netrc).",
            env_var=True,
        ),
    )
    archive: str | None = dataclasses.field(
        default=None,
        metadata=_help("Path of the archive outputs are deposited into."),
    )
    dtype: str | None = dataclasses.field(
        default=None,
        metadata=_help("Registered datatype of deposited outputs."),
    )
    metadata: str | None = dataclasses.field(
        default=None,
        metadata=_help('Metadata of deposited outputs, a JSON object ({"k": "v"}).'),
    )
    allow_remove: str | None = dataclasses.field(
        default=None,
        metadata=_help(
            "'yes' lets Snakemake remove deposited outputs (record and archived "
            "file) before re-running their job; default 'no': removal is refused."
        ),
    )


class StorageProvider(StorageProviderBase):
    """Resolves ``nbank`` queries through one registry; deposits into one archive."""

    def __post_init__(self) -> None:
        s = self.settings or StorageProviderSettings()
        self.allow_remove = setting(lambda: check_allowed(s.allow_remove))
        self.output_metadata = setting(lambda: json_object(s.metadata))
        self._archive_path = os.path.abspath(s.archive) if s.archive else None
        self._archive: ArchiveConfig | None = None
        url = s.registry
        if not url and not os.environ.get("NBANK_REGISTRY") and self._archive_path:
            url = setting(lambda: self.archive_config().registry)
        self._nbank = setting(lambda: Settings.from_env(registry=url, auth=s.auth))
        self._registry: Registry | None = None
        self.lookup = Lookup(_LazyResolver(self))
        self._objects: dict[str, list[StorageObject]] = {}
        self.jobs = JobIndex()

    # -- the interface -------------------------------------------------------
    @classmethod
    def example_queries(cls) -> list[ExampleQuery]:
        return [
            ExampleQuery(
                "nbank:st32_1_2_1",
                "a registered resource by id (nbank://st32_1_2_1 is the same)",
                QueryType.INPUT,
            ),
            ExampleQuery(
                "nbank://{unit}_spikes.csv",
                "an output deposited as '<unit>_spikes'; the job writes a .csv file",
                QueryType.OUTPUT,
            ),
        ]

    def rate_limiter_key(self, query: str, operation: Operation) -> Any:
        return self.registry_url

    def default_max_requests_per_second(self) -> float:
        return 100.0

    def use_rate_limiter(self) -> bool:
        return False  # requests are batched; a limiter would only queue them

    @classmethod
    def is_valid_query(cls, query: str) -> StorageQueryValidationResult:
        reason = _query.invalid_reason(query)
        return StorageQueryValidationResult(
            query=str(query), valid=reason is None, reason=reason
        )

    def postprocess_query(self, query: str) -> str:
        return _query.normalise(query)

    def safe_print(self, query: str) -> str:
        return query  # queries are ids; credentials live only in the settings

    # -- what the objects share ------------------------------------------------
    @property
    def registry_url(self) -> str:
        return self._nbank.registry

    @property
    def registry(self) -> Registry:
        """The registry, opened on first use."""
        if self._registry is None:
            self._registry = self._nbank.open()
        return self._registry

    def archive_config(self) -> ArchiveConfig:
        """The archive outputs go to; raises ConfigError if none is set."""
        if self._archive is None:
            if self._archive_path is None:
                raise WorkflowError(
                    "the nbank storage provider needs an archive to deposit outputs: "
                    "set archive=... in the Snakefile's storage directive or pass "
                    "--storage-nbank-archive PATH"
                )
            with edge(self._archive_path):
                self._archive = read_config(self._archive_path)
        return self._archive

    def output_dtype(self) -> str:
        dtype = self.settings.dtype if self.settings is not None else None
        if not dtype:
            raise WorkflowError(
                "the nbank storage provider needs the datatype of deposited outputs: "
                "set dtype=... in the storage directive or pass "
                "--storage-nbank-dtype NAME (see 'nbank dtype list')"
            )
        return dtype

    def _note(self, obj: StorageObject) -> None:
        assert obj.nbank_id is not None
        self._objects.setdefault(obj.nbank_id, []).append(obj)
        self.lookup.add(obj.nbank_id)

    def objects_of(self, ident: str) -> list[StorageObject]:
        return self._objects.get(ident, [])


class _LazyResolver:
    """A Resolver created on first use, so that no registry is opened while the
    Snakefile is parsed."""

    def __init__(self, provider: StorageProvider) -> None:
        self._provider = provider
        self._resolver: Resolver | None = None

    def locate_many(self, ids: list[str]) -> dict[str, Located]:
        if self._resolver is None:
            self._resolver = Resolver(self._provider.registry)
        return self._resolver.locate_many(ids)


class StorageObject(StorageObjectRead, StorageObjectWrite):
    """One ``nbank://ID[.ext]`` query: an input to link or an output to deposit."""

    provider: StorageProvider

    def __post_init__(self) -> None:
        self.nbank_id: str | None = None
        self.ext = ""
        if not _query.has_wildcards(self.query):
            try:
                self.nbank_id, self.ext = _query.parse(self.query)
            except NbankError:
                return  # Snakemake reports is_valid_query's reason
            self.provider._note(self)

    # -- paths ----------------------------------------------------------------
    def local_suffix(self) -> str:
        return _query.body(self.query)

    def get_inventory_parent(self) -> str | None:
        return None  # inventory fills exact keys; there is no directory to list

    def cleanup(self) -> None:
        pass  # Snakemake removes the local link; the archive is never touched

    # -- reading -------------------------------------------------------------
    async def inventory(self, cache: IOCacheStorageInterface) -> None:
        """Fills ``cache`` for this object and every object whose id the same bulk
        request answered."""
        if self.nbank_id is None:
            return
        with edge(self.query):
            answered = self.provider.lookup.resolve([self.nbank_id])
        ids = set(answered) | {self.nbank_id}
        for ident in ids:
            located = self.provider.lookup.known(ident)
            for obj in self.provider.objects_of(ident) or [self]:
                key = str(obj.local_path())
                if key in cache.exists_in_storage:
                    continue
                cache.exists_in_storage[key] = located is not None
                if located is not None and located.path is not None:
                    st = stat_or_none(located.path)
                    if st is not None:
                        cache.mtime[key] = Mtime(storage=past(st.st_mtime))
                        cache.size[key] = 0 if is_dir(st) else st.st_size
                if located is not None and located.sha1:
                    cache.checksum[key] = "sha1:" + located.sha1

    def _located(self) -> Located:
        if self.nbank_id is None:
            raise WorkflowError(f"{self.query} is not a valid nbank query")
        with edge(self.query):
            located = self.provider.lookup.get(self.nbank_id)
            if located is None:
                raise NotFound(
                    f"'{self.nbank_id}' is not registered in "
                    f"{self.provider.registry_url}"
                )
        return located

    def _archived(self) -> Path:
        located = self._located()
        with edge(self.query):
            return located.require_path()

    def exists(self) -> bool:
        if self.nbank_id is None:
            return False
        with edge(self.query):
            return self.provider.lookup.get(self.nbank_id) is not None

    def mtime(self) -> float:
        return past(os.stat(self._archived()).st_mtime)

    def size(self) -> int:
        st = os.stat(self._archived())
        return 0 if is_dir(st) else st.st_size

    def checksum(self) -> str | None:
        sha1 = self._located().sha1
        return f"sha1:{sha1}" if sha1 else None

    def local_footprint(self) -> int:
        return 0  # retrieved by a symbolic link

    def retrieve_object(self) -> None:
        """Links the archived file into the local path (replacing an old link)."""
        target = self._archived()
        local = self.local_path()
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.link")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.path.abspath(target), tmp)
        os.replace(tmp, local)

    # -- writing -------------------------------------------------------------
    def store_object(self) -> None:
        """Deposits the local file; the same content already archived under this id
        is success, different content is an error."""
        if self.nbank_id is None:
            raise WorkflowError(f"{self.query} is not a valid nbank query")
        provider = self.provider
        cfg, dtype = provider.archive_config(), provider.output_dtype()
        item = DepositItem(
            source=self.local_path(),
            name=self.nbank_id,
            metadata=provider.jobs.provenance(self, provider.registry_url),
        )
        with edge(self.query):
            (result,) = deposit(
                cfg,
                [item],
                dtype=dtype,
                metadata=provider.output_metadata,
                registry=provider.registry,
                keep_source=True,
                exist_ok=True,
            )
        if not result.ok:
            raise WorkflowError(
                f"{self.query} was not deposited: {result.error}"
            ) from result.exception
        assert result.path is not None
        provider.lookup.remember(
            Located(
                self.nbank_id,
                result.sha1,
                result.path.name,
                ({"scheme": "neurobank", "root": str(cfg.path)},),
                result.path,
            )
        )

    def remove(self) -> None:
        """Refuses unless ``allow_remove`` is ``yes``; then deletes the record and
        the archived file (only in the workflow's archive)."""
        if not self.provider.allow_remove:
            raise WorkflowError(
                f"{self.query} is archived and archived resources are immutable, so "
                "it was not removed (Snakemake removes outputs before re-running "
                "their job). Deposit new results under a new id, or allow removal "
                "with allow_remove='yes' (--storage-nbank-allow-remove yes)"
            )
        if self.nbank_id is None:
            return
        cfg = self.provider.archive_config()
        with edge(self.query):
            located = self.provider.lookup.get(self.nbank_id)
            if located is None:
                return
            withdraw(cfg, self.provider.registry, located)
        self.provider.lookup.forget(self.nbank_id)
