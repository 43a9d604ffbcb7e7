"""``NbankTarget``: a neurobank resource as a luigi target.

``exists()`` is true when the registry knows the id AND its file is in an
archive mounted here; registry errors propagate (luigi reports them) rather than
reading as "missing", which would rerun tasks. ``open("r")`` reads the archived
file; ``open("w")`` and ``temporary_path()`` write a staged output inside the
archive (:class:`nbank_core.StagedOutput`) and deposit it on success, publishing
nothing if the block raises. With ``format=`` (luigi's formats: ``Gzip``,
``Nop``, ``UTF8``, chains of them) both go through the format's pipes, as for
a :class:`luigi.LocalTarget`.

>>> t = NbankTarget("nbank://st32_1_spikes", registry="sqlite:///tmp/r.sqlite")
>>> t.id, str(t)
('st32_1_spikes', 'nbank://st32_1_spikes')
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import luigi
from luigi.format import FileWrapper, Format

from nbank_core import (
    ArchiveConfig,
    ConfigError,
    DepositResult,
    NotFound,
    PolicyError,
    Resolver,
    StagedOutput,
    canonical_url,
    full_url,
    parse_query,
    same_registry,
)
from nbank_luigi import lookup
from nbank_luigi.config import resolve_settings, setting
from nbank_luigi.writer import Commit, open_formatted, open_output

__all__ = ["NbankTarget"]

_READ_MODES = {"r", "rt", "rb"}
_WRITE_MODES = {"w", "wt", "wb"}


class NbankTarget(luigi.Target):
    """The resource ``id``: ``ID``, ``nbank:ID``, ``nbank://ID`` or a full
    identifier URL (which names its registry), each with an optional ``.ext``
    (then the stored file's extension).

    ``dtype``, ``metadata`` and ``suffix`` (the stored file's extension, default
    the datatype's) apply to writes; a target returned by an
    :class:`~nbank_luigi.NbankTask`'s ``output()`` also takes the task's
    ``dtype`` and provenance metadata. With no datatype named by the target, the
    task or ``[nbank] dtype``, the extension names it when exactly one registered
    datatype has it (:meth:`check_writable` says why not, before a task runs).
    Outputs are registered as derived (their hash in ``content_sha1``
    metadata), so identical results under different ids are all deposited.

    ``format`` is one of luigi's formats, as for a ``LocalTarget``: then
    ``open("r")`` and ``open("w")`` read and write through it, and it decides
    between text and bytes (``luigi.format.Nop``: bytes; ``UTF8``: text;
    ``Gzip``: bytes, compressed; ``UTF8 >> Gzip``: text, compressed); a ``b``
    or ``t`` in the mode is ignored. Without one, ``r``/``w`` are UTF-8 text
    and ``rb``/``wb`` bytes. ``archive`` and ``registry`` default to
    the ``[nbank]`` settings; with an archive, its registry is used, and a
    ``registry`` that is not the archive's is an error here, before any task
    runs. A full URL of another registry makes a target that reads from it. The
    target holds settings only, never a connection, so it pickles to worker
    processes.

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
        format: Format | None = None,  # noqa: A002 - luigi's name for it
    ) -> None:
        query = parse_query(str(id))  # InvalidIdentifier is a ValueError
        self.id = query.id
        if suffix and not (suffix.startswith(".") and suffix[1:].isalnum()):
            raise ConfigError(f"invalid suffix {suffix!r}: expected e.g. '.csv'")
        if suffix and query.ext and suffix != query.ext:
            raise ConfigError(
                f"the output {id!r} ends in {query.ext!r}, but suffix={suffix!r} "
                "was given: name one extension"
            )
        self.suffix = suffix or query.ext or None
        self.settings = resolve_settings(registry, archive)
        self._elsewhere = False
        if query.registry and not same_registry(query.registry, self.settings.registry):
            # named by its URL in another registry: read from there, never written
            self.settings = resolve_settings(query.registry, use_archive=False)
            self._elsewhere = True
        if format is not None and not hasattr(format, "pipe_writer"):
            raise ConfigError(f"invalid format {format!r}: expected a luigi format")
        self.format = format
        self.dtype = dtype
        self.metadata = dict(metadata or {})
        self.task: luigi.Task | None = None  # the task whose output this is
        self._key = (self.id, canonical_url(self.settings.registry))
        lookup.note(self)

    # -- identity --------------------------------------------------------------
    @property
    def archive(self) -> str | None:
        """The archive a write deposits into (its path), if any."""
        return self.settings.archive

    @property
    def resolver(self) -> Resolver:
        """The resolver this process shares for the target's registry."""
        return lookup.resolver(self.settings)

    @property
    def url(self) -> str:
        """The full identifier (``<registry>/resources/<id>/``)."""
        return full_url(self.settings.registry, self.id)

    def __str__(self) -> str:
        return f"nbank://{self.id}"

    def __repr__(self) -> str:
        return f"NbankTarget({self.id!r}, registry={self.settings.registry!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NbankTarget) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

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
        loc = lookup.locate(self)
        return loc is not None and loc.path is not None

    def locate(self) -> Path:
        """The archived file; raises NotFound saying why there is none here."""
        loc = lookup.locate(self)
        if loc is None:
            raise NotFound(f"'{self.id}' is not registered in {self.settings.registry}")
        return loc.require_path()

    def open(
        self, mode: str = "r", encoding: str | None = None, newline: str | None = None
    ) -> IO[Any]:
        """Opens the archived file (``r``/``rb``) or a new output (``w``/``wb``)
        that is deposited when closed, and discarded if the ``with`` block
        raises. With a ``format``, it reads or writes through the format's pipes
        and decides text or bytes (``encoding`` and ``newline`` are its own)."""
        if self.format is not None:
            return self._open_formatted(mode, encoding, newline)
        if mode in _READ_MODES:
            if "b" in mode:
                return open(self.locate(), "rb")  # noqa: SIM115 - the caller closes
            return open(self.locate(), mode, encoding=encoding or "utf-8")
        if mode in _WRITE_MODES:
            commit = self._committer()
            staged = StagedOutput(self._archive(), self.id, self._suffix())
            return open_output(staged, commit, mode, encoding=encoding, newline=newline)
        raise ValueError(f"unsupported mode {mode!r}: use 'r', 'rb', 'w' or 'wb'")

    def _open_formatted(
        self, mode: str, encoding: str | None, newline: str | None
    ) -> IO[Any]:
        assert self.format is not None
        if encoding is not None or newline is not None:
            raise ValueError(
                "the target's format decides the encoding and newlines: use "
                "e.g. format=luigi.format.TextFormat(encoding=...), not open(...)"
            )
        rw = mode.replace("b", "").replace("t", "")
        if rw == "r":
            raw = FileWrapper(io.BufferedReader(io.FileIO(self.locate(), "r")))
            return self.format.pipe_reader(raw)  # type: ignore[no-any-return]
        if rw == "w":
            commit = self._committer()
            staged = StagedOutput(self._archive(), self.id, self._suffix())
            return open_formatted(staged, commit, self.format)
        raise ValueError(f"unsupported mode {mode!r}: use 'r' or 'w' with a format")

    # -- writing ---------------------------------------------------------------
    def check_writable(self) -> None:
        """Raises what a write would fail with, before anything is written: no
        archive here, an archive that names resources itself, no datatype (none
        named and none or several registered for the extension), an unknown
        datatype. Answers about datatypes are kept for a few seconds, so a
        schedule of many tasks asks about each datatype once."""
        self._archive()
        self._suffix()

    @contextlib.contextmanager
    def temporary_path(self) -> Iterator[str]:
        """Yields a path (not yet created) inside the archive's staging directory;
        what the block writes there (a file or a directory) is deposited if it
        ends without error. The path is removed in every case.

        Example::

            with self.output().temporary_path() as tmp:
                subprocess.run(["sort", "-o", tmp, src], check=True)
        """
        commit = self._committer()
        # luigi's contract: the path does not exist yet (a command may make a
        # directory there); the core's staged name is unique by its token
        staged = StagedOutput(self._archive(), self.id, self._suffix(), create=False)
        try:
            yield str(staged.path)
            if not os.path.lexists(staged.path):
                raise NotFound(
                    f"nothing was written at the temporary path '{staged.path}' of "
                    f"output '{self.id}'; the command should write its result there"
                )
            commit(staged)
        finally:
            staged.discard()

    def _committer(self) -> Commit:
        """What a write deposits with: the datatype and metadata are settled (and
        checked) before anything is written."""
        registry = self.resolver.registry
        dtype = self._dtype()
        metadata: dict[str, Any] = {}
        provenance = getattr(self.task, "output_metadata", None)
        if provenance is not None:
            metadata.update(provenance())
        metadata.update(self.metadata)  # the user's keys win

        def commit(staged: StagedOutput) -> DepositResult:
            # derived: the hash is kept in metadata, so identical results under
            # other ids (two empty lists) are deposited too
            result = staged.commit(
                registry, dtype=dtype, metadata=metadata, derived=True
            )
            if result.path is not None:
                self.resolver.remember_deposit(result, staged.archive)
            return result

        return commit

    def _dtype(self) -> str:
        """The datatype named by the target, the task or ``[nbank]``, else the
        one registered for the extension (the core's ConfigError if not one)."""
        dtype = self.dtype or getattr(self.task, "dtype", None) or setting("dtype")
        if dtype:
            return dtype
        if not self.suffix:
            raise ConfigError(
                f"no datatype for output '{self.id}': set dtype on the task, "
                "NbankTarget(dtype=...), or dtype in the [nbank] section, or give "
                "the output an extension that one registered datatype has"
            )
        return lookup.dtype_for_suffix(self.settings, self.suffix)

    def _suffix(self) -> str:
        """The stored file's extension: the target's, else the datatype's (which
        also checks that the datatype exists)."""
        info = lookup.datatype(self.settings, self._dtype())
        if self.suffix is not None:
            return self.suffix
        ext = (info.get("extension") or "").lstrip(".")
        return f".{ext}" if ext else ""

    def _archive(self) -> ArchiveConfig:
        if self._elsewhere:
            raise ConfigError(
                f"the output '{self.url}' names another registry than the archive's: "
                "deposits go to the archive's registry; name outputs by their id"
            )
        if not self.archive:
            raise ConfigError(
                f"no archive to deposit the output '{self.id}' into: set archive "
                "in the [nbank] section of luigi.cfg, pass --nbank-archive, or "
                "NbankTarget(archive=...)"
            )
        cfg = self.settings.archive_config()
        if cfg.auto_identifiers:
            raise PolicyError(
                f"the archive at '{cfg.path}' names resources automatically, but a "
                "luigi output needs the id its task gives it; deposit outputs into "
                "an archive without auto_identifiers"
            )
        return cfg
