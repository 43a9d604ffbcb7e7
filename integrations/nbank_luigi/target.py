"""``NbankTarget``: a neurobank resource as a luigi target.

``exists()`` is true when the registry knows the id AND its file is in an
archive mounted here; registry errors propagate (luigi reports them) rather than
reading as "missing", which would rerun tasks. ``open("r")`` reads the archived
file; ``open("w")`` and ``temporary_path()`` write inside the archive's staging
directory and deposit on success, publishing nothing if the block raises.

>>> t = NbankTarget("nbank://st32_1_spikes", registry="sqlite:///tmp/r.sqlite")
>>> t.id, str(t)
('st32_1_spikes', 'nbank://st32_1_spikes')
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import luigi

from nbank_core import (
    ArchiveConfig,
    ConfigError,
    DepositResult,
    Located,
    NotFound,
    PolicyError,
    full_url,
    parse_identifier,
)
from nbank_luigi.config import archive_config, nbank, resolve_settings
from nbank_luigi.lookup import Lookup, lookup_for
from nbank_luigi.writer import DepositingFile, DepositPlan, remove_temp

__all__ = ["NbankTarget"]

_READ_MODES = {"r", "rt", "rb"}
_WRITE_MODES = {"w", "wt", "wb"}


class NbankTarget(luigi.Target):
    """The resource ``id`` (a bare id, ``nbank:``/``nbank://`` form, or a full
    URL, which names its own registry).

    ``dtype``, ``metadata`` and ``suffix`` (the stored file's extension, default
    the datatype's) apply to writes; a target returned by an
    :class:`~nbank_luigi.NbankTask`'s ``output()`` also takes the task's
    ``dtype`` and provenance metadata. ``archive`` and ``registry`` default to
    the ``[nbank]`` settings. The target holds settings only, never a
    connection, so it pickles to worker processes.

    Example::

        def output(self):
            return NbankTarget(f"{self.unit}_spikes", dtype="spike-times")
    """

    def __init__(
        self,
        id: str,
        *,
        dtype: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        suffix: str | None = None,
        archive: str | os.PathLike[str] | None = None,
        registry: str | None = None,
    ) -> None:
        base, self.id = parse_identifier(str(id))
        self.settings, archive_path = resolve_settings(
            base or registry, str(archive) if archive is not None else None
        )
        self.archive = archive_path
        self.dtype = dtype
        self.metadata = dict(metadata or {})
        if suffix and not (suffix.startswith(".") and suffix[1:].isalnum()):
            raise ConfigError(f"invalid suffix {suffix!r}: expected e.g. '.csv'")
        self.suffix = suffix
        self.task: luigi.Task | None = None  # the task whose output this is
        self.lookup.note(self.id)

    # -- identity --------------------------------------------------------------
    @property
    def lookup(self) -> Lookup:
        """This process's memory of the target's registry."""
        return lookup_for(self.settings)

    @property
    def url(self) -> str:
        """The full identifier (``<registry>/resources/<id>/``)."""
        return full_url(self.settings.registry, self.id)

    def __str__(self) -> str:
        return f"nbank://{self.id}"

    def __repr__(self) -> str:
        return f"NbankTarget({self.id!r}, registry={self.settings.registry!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NbankTarget) and (self.id, self.settings.registry) == (
            other.id,
            other.settings.registry,
        )

    def __hash__(self) -> int:
        return hash((self.id, self.settings.registry))

    def bound_to(self, task: luigi.Task) -> NbankTarget:
        """A copy that takes ``dtype`` and metadata from ``task`` when written."""
        if self.task is task:
            return self
        copy = object.__new__(NbankTarget)
        copy.__dict__.update(self.__dict__, task=task)
        return copy

    # -- reading ---------------------------------------------------------------
    def exists(self) -> bool:
        """True if the resource is registered and its file is in an archive here.
        Registry errors propagate."""
        return self.lookup.exists(self.id)

    def locate(self) -> Path:
        """The archived file; raises NotFound saying why there is none here."""
        loc = self.lookup.get(self.id)
        if loc is None:
            raise NotFound(f"'{self.id}' is not registered in {self.settings.registry}")
        return loc.require_path()

    def open(
        self, mode: str = "r", encoding: str | None = None, newline: str | None = None
    ) -> IO[Any] | DepositingFile:
        """Opens the archived file (``r``/``rb``) or a new output (``w``/``wb``)
        that is deposited when closed, and discarded if the ``with`` block
        raises."""
        if mode in _READ_MODES:
            if "b" in mode:
                return open(self.locate(), "rb")  # noqa: SIM115 - the caller closes
            return open(self.locate(), mode, encoding=encoding or "utf-8")
        if mode in _WRITE_MODES:
            return DepositingFile(self.plan(), mode, encoding=encoding, newline=newline)
        raise ValueError(f"unsupported mode {mode!r}: use 'r', 'rb', 'w' or 'wb'")

    # -- writing ---------------------------------------------------------------
    @contextlib.contextmanager
    def temporary_path(self) -> Iterator[str]:
        """Yields a path (not yet created) inside the archive's staging directory;
        what the block writes there is deposited if it ends without error. The
        temp path is removed in every case.

        Example::

            with self.output().temporary_path() as tmp:
                subprocess.run(["sort", "-o", tmp, src], check=True)
        """
        plan = self.plan()
        tmp = plan.temp_path()
        try:
            yield str(tmp)
            if not os.path.lexists(tmp):
                raise NotFound(
                    f"nothing was written at the temporary path '{tmp}' of output "
                    f"'{self.id}'; the command should write its result there"
                )
            plan.commit(tmp)
        finally:
            remove_temp(tmp)

    def plan(self) -> DepositPlan:
        """What a write deposits: archive, registry, dtype, metadata, suffix."""
        cfg = self._archive()
        dtype = self.dtype or getattr(self.task, "dtype", None) or nbank().dtype
        if not dtype:
            raise ConfigError(
                f"no datatype for output '{self.id}': set dtype on the task, "
                "NbankTarget(dtype=...), or dtype in the [nbank] section"
            )
        registry = self.lookup.registry
        suffix = self.suffix
        if suffix is None:  # the datatype's extension (also checks it exists)
            ext = (registry.get_datatype(dtype).get("extension") or "").lstrip(".")
            suffix = f".{ext}" if ext else ""
        metadata: dict[str, Any] = {}
        provenance = getattr(self.task, "output_metadata", None)
        if provenance is not None:
            metadata.update(provenance())
        metadata.update(self.metadata)
        return DepositPlan(
            cfg, registry, self.id, dtype, metadata, suffix, on_commit=self._remember
        )

    def _archive(self) -> ArchiveConfig:
        if not self.archive:
            raise ConfigError(
                f"no archive to deposit the output '{self.id}' into: set archive "
                "in the [nbank] section of luigi.cfg, pass --nbank-archive, or "
                "NbankTarget(archive=...)"
            )
        cfg = archive_config(self.archive)
        if cfg.auto_identifiers:
            raise PolicyError(
                f"the archive at '{cfg.path}' names resources automatically, but a "
                "luigi output needs the id its task gives it; deposit outputs into "
                "an archive without auto_identifiers"
            )
        return cfg

    def _remember(self, result: DepositResult) -> None:
        if result.id and result.path is not None:
            located = Located(result.id, result.sha1, result.path.name, (), result.path)
            self.lookup.remember(located)
