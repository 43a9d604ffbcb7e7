"""Snakemake storage plugin ``nbank``: inputs by identifier, outputs deposited.

In a Snakefile::

    storage:
        provider="nbank", archive="/data/archive", dtype="spike-times"

    rule spikes:
        input:  storage.nbank("nbank:{unit}.pcm")
        output: storage.nbank("nbank://{unit}_spikes.csv")
        shell:  "sort-spikes {input} > {output}"

Inputs are looked up in the registry in bulk and linked (not copied) from the
archive into Snakemake's local storage prefix, or downloaded through the registry
where their archive is not mounted. Outputs are deposited into ``archive``
through nbank_core's deposit, a job's outputs all or nothing, as derived
resources, with provenance metadata (see :mod:`._outputs`, :mod:`._provenance`);
their datatype is the ``dtype`` setting or the one their extension names.
Snakemake's removals keep archived resources, and ``--touch`` accepts them (see
:mod:`._remove`). Settings are also flags (``--storage-nbank-archive``) and,
for the registry and credentials, environment variables
(``SNAKEMAKE_STORAGE_NBANK_REGISTRY``, ``..._AUTH``, or nbank's own
``NBANK_REGISTRY`` / ``NBANK_AUTH``). Which registry is used follows nbank's one
rule (:func:`nbank_core.resolve_settings`): with an archive, the registry its
``nbank.json`` names, for reads and deposits; an explicit ``registry`` setting
that differs from it stops the workflow at start-up.

>>> StorageProvider.is_valid_query("nbank:{unit}_spikes.csv").valid
True
>>> StorageProvider.is_valid_query("nbank://a/b").valid
False
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_storage_plugins.common import Operation
from snakemake_interface_storage_plugins.io import IOCacheStorageInterface, Mtime
from snakemake_interface_storage_plugins.settings import StorageProviderSettingsBase
from snakemake_interface_storage_plugins.storage_object import (
    StorageObjectRead,
    StorageObjectTouch,
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
    Located,
    NbankError,
    NotFound,
    Registry,
    Resolver,
    record_sha1,
    resolve_settings,
    resolver_for,
    withdraw,
)

from . import _query
from ._outputs import Outputs
from ._provenance import JobIndex
from ._remove import Accepted, check_allowed, unlink_if_shared
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
            "the archive's registry, else $NBANK_REGISTRY, else the embedded one. "
            "With an archive, it must be the archive's registry.",
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
        metadata=_help(
            "Registered datatype of deposited outputs. Default: the one datatype "
            "registered with the output's extension."
        ),
    )
    metadata: str | None = dataclasses.field(
        default=None,
        metadata=_help('Metadata of deposited outputs, a JSON object ({"k": "v"}).'),
    )
    allow_remove: str | None = dataclasses.field(
        default=None,
        metadata=_help(
            "'yes' lets Snakemake remove deposited outputs (record and archived "
            "file) before re-running their job; default 'no': archived outputs are "
            "kept, and a rerun's output is accepted if its content is the same."
        ),
    )


class StorageProvider(StorageProviderBase):
    """Resolves ``nbank`` queries through one registry; deposits into one archive."""

    def __post_init__(self) -> None:
        s = self.settings or StorageProviderSettings()
        self.allow_remove = setting(lambda: check_allowed(s.allow_remove))
        self.output_metadata = setting(lambda: json_object(s.metadata))
        archive = os.path.abspath(s.archive) if s.archive else None
        # nbank's one settings rule; it reads the archive's nbank.json (if one is
        # set) and opens nothing: the registry is opened by the first lookup
        self.nbank = setting(
            lambda: resolve_settings(s.registry or None, archive=archive, auth=s.auth)
        )
        self._resolver: Resolver | None = None
        self._objects: dict[str, list[StorageObject]] = {}
        self._ahead_at = -math.inf
        self.jobs = JobIndex()
        self.outputs = Outputs(self)
        self.accepted = Accepted(Path(self.local_prefix) / ".accepted")

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

    def rate_limiter(self, query: str, operation: Operation) -> Any:
        """No limiter (see :meth:`use_rate_limiter`), and one reusable no-op
        context rather than a new one per call: Snakemake's scheduler asks each
        ready job's inputs for their existence and size at every round."""
        return _NO_LIMIT

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
        return self.nbank.registry

    @property
    def resolver(self) -> Resolver:
        """The process's shared lookup cache for the registry, made (and the
        registry opened) on first use; it fetches every id handed out so far with
        its next bulk request."""
        if self._resolver is None:
            resolver = resolver_for(self.nbank)
            resolver.expect(list(self._objects))
            self._resolver = resolver
        return self._resolver

    def lookups_ahead(self) -> Resolver:
        """The resolver, told (at most twice per cache lifetime) to fetch again
        every id handed out whose answer has expired, with its next bulk request:
        in a run longer than the cache lifetime, jobs then do not look up their
        inputs one by one."""
        resolver = self.resolver
        now = time.monotonic()
        if now - self._ahead_at >= resolver.ttl / 2:
            self._ahead_at = now
            resolver.expect(list(self._objects))
        return resolver

    @property
    def registry(self) -> Registry:
        """The registry, opened on first use."""
        return self.resolver.registry

    def archive_config(self) -> ArchiveConfig:
        """The archive outputs go to; raises WorkflowError if none is set."""
        if self.nbank.archive is None:
            raise WorkflowError(
                "the nbank storage provider needs an archive to deposit outputs: "
                "set archive=... in the Snakefile's storage directive or pass "
                "--storage-nbank-archive PATH"
            )
        with edge(self.nbank.archive):
            return self.nbank.archive_config()

    def storage_mtime(self, ident: str, archived: float) -> float:
        """The time Snakemake sees for an output: its archived file's, or the later
        time this working directory accepted it again (never in the future)."""
        accepted = self.accepted.time(ident)
        return past(archived if accepted is None else max(archived, accepted))

    def _note(self, obj: StorageObject) -> None:
        assert obj.nbank_id is not None
        self._objects.setdefault(obj.nbank_id, []).append(obj)
        if self._resolver is not None:
            self._resolver.expect([obj.nbank_id])

    def objects_of(self, ident: str) -> list[StorageObject]:
        return self._objects.get(ident, [])

    def not_inventoried(self, cache: IOCacheStorageInterface) -> list[str]:
        """The ids handed out whose objects ``cache`` does not know yet."""
        return [
            ident
            for ident, objs in list(self._objects.items())
            if any(str(o.local_path()) not in cache.exists_in_storage for o in objs)
        ]


_NO_LIMIT = contextlib.nullcontext()


class StorageObject(StorageObjectRead, StorageObjectWrite, StorageObjectTouch):
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
            self.provider.outputs.check([self])  # an output's datatype: now

    # -- paths ----------------------------------------------------------------
    def local_suffix(self) -> str:
        return _query.local_suffix(self.query)

    def local_path(self) -> Path:
        """The local path, computed once: Snakemake's scheduler asks each object
        about it (through ``exists`` and ``size``) at every scheduling round."""
        if self._overwrite_local_path:
            return self._overwrite_local_path
        path = self.__dict__.get("_local")
        if path is None:
            path = self._local = self.provider.local_prefix / self.local_suffix()
        return path

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
        provider = self.provider
        ids = [self.nbank_id, *provider.not_inventoried(cache)]
        provider.outputs.check(
            [o for i in dict.fromkeys(ids) for o in provider.objects_of(i) or [self]]
        )
        with edge(self.query):
            found = provider.resolver.locate_many(ids)
        for ident in dict.fromkeys(ids):
            located = found.get(ident)
            for obj in provider.objects_of(ident) or [self]:
                key = str(obj.local_path())
                if key in cache.exists_in_storage:
                    continue
                cache.exists_in_storage[key] = located is not None
                if located is not None and located.path is not None:
                    st = stat_or_none(located.path)
                    if st is not None:
                        mtime = provider.storage_mtime(ident, st.st_mtime)
                        cache.mtime[key] = Mtime(storage=mtime)
                        cache.size[key] = 0 if is_dir(st) else st.st_size
                if located is not None and located.sha1:
                    cache.checksum[key] = "sha1:" + located.sha1

    def _located(self) -> Located:
        if self.nbank_id is None:
            raise WorkflowError(f"{self.query} is not a valid nbank query")
        hit = self.provider.resolver.cached(self.nbank_id)
        if hit is not None:
            return hit
        try:  # as edge() does, without a context manager: asked at every round
            return self.provider.lookups_ahead().locate(self.nbank_id)
        except NbankError as err:
            raise WorkflowError(f"{self.query}: {err}") from err

    def _archived(self) -> Path:
        located = self._located()
        with edge(self.query):
            return located.require_path()

    def exists(self) -> bool:
        if self.nbank_id is None:
            return False
        self.provider.outputs.check([self])
        if self.provider.resolver.cached(self.nbank_id) is not None:
            return True  # asked at every scheduling round: no lookup while fresh
        try:  # as edge() does: asked at every scheduling round
            # a miss answers the next questions for a second: Snakemake asks
            # about a job's outputs twice as it starts the job
            found = self.provider.lookups_ahead().locate_many(
                [self.nbank_id], keep_misses=True
            )
        except NbankError as err:
            raise WorkflowError(f"{self.query}: {err}") from err
        return self.nbank_id in found

    def mtime(self) -> float:
        located = self._located()
        if located.path is None and self.provider.registry.serves_downloads:
            return 0.0  # downloaded: immutable, so never newer than an output
        with edge(self.query):
            archived = os.stat(located.require_path()).st_mtime
        return self.provider.storage_mtime(located.id, archived)

    def size(self) -> int:
        located = self._located()
        known = self.__dict__.get("_size")
        if known is not None and known[0] is located:
            return known[1]  # the same answer, for an immutable resource
        if located.path is None and self.provider.registry.serves_downloads:
            with edge(self.query):
                size = self.provider.registry.download_size(located.id)
        else:
            with edge(self.query):
                st = os.stat(located.require_path())
            size = 0 if is_dir(st) else st.st_size
        self._size = (located, size)
        return size

    def checksum(self) -> str | None:
        sha1 = self._located().sha1
        return f"sha1:{sha1}" if sha1 else None

    def local_footprint(self) -> int:
        if self._located().path is None:
            return self.size()  # downloaded
        return 0  # retrieved by a symbolic link

    def retrieve_object(self) -> None:
        """Links the archived file into the local path (replacing an old link), or,
        where no archive holding it is mounted, downloads it from the registry
        (verified against its sha1) when the registry serves downloads."""
        located = self._located()
        local = self.local_path()
        local.parent.mkdir(parents=True, exist_ok=True)
        if located.path is None and self.provider.registry.serves_downloads:
            self._download(located, local)
            return
        target = os.path.abspath(self._archived())
        try:
            os.symlink(target, local)
            return
        except FileExistsError:
            pass  # an old link or copy: replaced in one step
        tmp = local.with_name(f".{local.name}.{os.getpid()}.link")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, local)

    def _download(self, located: Located, local: Path) -> None:
        sha1 = located.sha1
        registry = self.provider.registry
        with edge(self.query):
            if sha1 is None:  # a derived output keeps its hash in its metadata
                sha1 = record_sha1(registry.get_resource(located.id))
            try:
                registry.download(located.id, local, sha1=sha1)
            except NotFound as err:
                try:
                    located.require_path()
                except NotFound as here:
                    raise NotFound(f"{here}; {err}") from err
                raise
        self.provider.logger.info(
            f"Downloaded {self.query} from the registry {registry.url} (no archive "
            "holding it is mounted here)"
        )

    # -- writing -------------------------------------------------------------
    def store_object(self) -> None:
        """Deposits the local file, with every other output of its job, all or
        nothing (see :mod:`._outputs`); the same content already archived under
        this id is success, different content is an error."""
        if self.nbank_id is None:
            raise WorkflowError(f"{self.query} is not a valid nbank query")
        result = self.provider.outputs.store(self)
        if not result.ok:
            raise WorkflowError(
                f"{self.query} was not deposited: {result.error}"
            ) from result.exception

    def remove(self) -> None:
        """Keeps the archived resource and logs so, unless ``allow_remove`` is
        ``yes``; then deletes the record and the archived file (only in the
        workflow's archive). See :mod:`._remove`."""
        if self.nbank_id is None:
            return
        resolver = self.provider.resolver
        with edge(self.query):
            located = resolver.locate_many([self.nbank_id]).get(self.nbank_id)
        if located is None:
            return
        if not self.provider.allow_remove:
            unlink_if_shared(self.local_path(), located.path)
            self.provider.logger.info(
                f"Kept {self.query}: archived resources are immutable, so it was "
                "not removed (allow_remove=yes lets Snakemake remove it). A rerun's "
                "output is accepted if its content is the same"
            )
            return
        cfg = self.provider.archive_config()
        with edge(self.query):
            withdraw(cfg, resolver.registry, located)
        resolver.forget(self.nbank_id)

    def touch(self) -> None:
        """``--touch``: accepts the archived resource as the output of its (changed)
        rule without running the job; the archive is not changed."""
        if self.nbank_id is None:
            raise WorkflowError(f"{self.query} is not a valid nbank query")
        self._located()  # NotFound (a WorkflowError) if it is not registered
        self.provider.accepted.mark(self.nbank_id)
        self.provider.logger.info(
            f"Accepted the archived {self.query} as up to date (--touch); the "
            "archive is unchanged"
        )
