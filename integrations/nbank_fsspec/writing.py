"""Writing resources: bytes go to the core's staged output in the archive's
``staging/`` (:class:`nbank_core.StagedOutput`, named ``<id>~<token><ext>``), and
are deposited (through :func:`nbank_core.deposit`, the one deposit path) only on
commit.

- Outside a transaction, closing the file commits it, unless the ``with`` block that
  wrote it raised: then the staged file is removed and nothing is registered. This
  holds for ``with fs.open(...)`` (the file's own ``__exit__`` sees the exception)
  and for ``with fsspec.open(...)``, whose wrapper closes the file without passing
  the exception on: ``close()`` then sees it as the exception being handled
  (``sys.exception()``), and discards if it is not the one that was already being
  handled when the file was opened.
- Inside ``with fs.transaction:``, closing only finishes the staged file; every file
  of the transaction is deposited when the block ends without an exception (one
  deposit per archive and datatype), and discarded otherwise.
- Resources are immutable: writing the same bytes again under an id is a success
  (``exist_ok``); different bytes raise ``FileExistsError``.

A file that is never closed is discarded when it is garbage-collected.

>>> import tempfile, pathlib, fsspec
>>> from nbank_core import init_archive, add_datatype
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> url = "sqlite://" + str(tmp / "registry.sqlite")
>>> arch = init_archive(tmp / "archive", registry=url)
>>> _ = add_datatype("txt", "text/plain", "txt", registry=url)
>>> fs = fsspec.filesystem("nbank", registry=url, archive=arch.path, dtype="txt")
>>> try:
...     with fs.open("nbank://note_1", "wb") as f:
...         _ = f.write(b"half a no")
...         raise KeyboardInterrupt
... except KeyboardInterrupt:
...     pass
>>> fs.exists("note_1"), list(arch.staging_dir.iterdir())
(False, [])
>>> with fs.transaction:
...     fs.pipe("nbank://note_1", b"hello")
>>> fs.cat("nbank://note_1")
b'hello'
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fsspec.transaction import Transaction

from nbank_core import (
    ArchiveConfig,
    DepositItem,
    DepositResult,
    PolicyError,
    Registry,
    Settings,
    StagedOutput,
    deposit,
    raise_for_result,
)

__all__ = ["DepositFile", "DepositTransaction", "Depositor", "deposit_files"]

_SUFFIX = re.compile(r"(\.[-\w]+)*")


class Depositor:
    """Where and how a filesystem deposits: its archive (from its settings), the
    default datatype and metadata, and the datatypes' file extensions."""

    OPTIONS = frozenset({"dtype", "metadata", "suffix"})

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        dtype: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.dtype = dtype
        self.metadata = dict(metadata or {})
        self._suffixes: dict[str, str] = {}

    def open(
        self,
        fs: Any,
        ident: str,
        *,
        ext: str = "",
        exist_ok: bool,
        autocommit: bool,
        **options: Any,
    ) -> DepositFile:
        """A new file to deposit under ``ident``; ``options`` (``dtype``,
        ``metadata``, ``suffix``: the archived file's extension, else the path's
        ``.ext``, else the datatype's) override the defaults for this file."""
        unknown = set(options) - self.OPTIONS
        if unknown:
            raise TypeError(
                f"unknown option(s) for writing: {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(self.OPTIONS))}"
            )
        cfg = self.config()
        dtype = options.get("dtype") or self.dtype
        if not dtype:
            raise ValueError(
                f"writing nbank://{ident} needs a datatype: pass dtype= to the "
                "filesystem (storage_options) or to open()"
            )
        suffix = options.get("suffix")
        if suffix is not None and not _SUFFIX.fullmatch(suffix):
            raise ValueError(
                f"invalid suffix {suffix!r}: give a file extension such as '.csv'"
            )
        if suffix is not None and ext and suffix != ext:
            raise ValueError(
                f"nbank://{ident}{ext} names the extension {ext!r}, but suffix="
                f"{suffix!r} was given: give one of them"
            )
        if suffix is None:
            suffix = ext or self.suffix(dtype)
        return DepositFile(
            fs,
            ident,
            archive=cfg,
            dtype=dtype,
            metadata={**self.metadata, **(options.get("metadata") or {})},
            suffix=suffix,
            exist_ok=exist_ok,
            autocommit=autocommit,
        )

    def config(self) -> ArchiveConfig:
        """The archive's configuration; refuses archives that name resources
        themselves, as a path's id could not be kept."""
        if self.settings.archive is None:
            raise ValueError(
                "writing resources needs an archive: pass archive='/path/to/"
                "archive' to the filesystem (storage_options)"
            )
        cfg = self.settings.archive_config()
        if cfg.auto_identifiers:
            raise PolicyError(
                f"the archive at '{cfg.path}' names resources itself "
                "(auto_identifiers): it cannot store a resource under the id "
                "of an nbank:// path; deposit with 'nbank deposit' instead"
            )
        return cfg

    def suffix(self, dtype: str) -> str:
        """The file extension of ``dtype`` (one registry request per datatype);
        raises FileNotFoundError for a datatype the registry does not know."""
        if dtype not in self._suffixes:
            ext = (self.registry.get_datatype(dtype).get("extension") or "").lstrip(".")
            self._suffixes[dtype] = f".{ext}" if ext else ""
        return self._suffixes[dtype]


class DepositFile(io.IOBase):
    """A binary file being written for deposit under the id ``path``.

    Backed by the staged file opened ``w+b``: seekable and readable as well as
    writable, as HDF5 (h5py, ``to_netcdf(..., engine="h5netcdf")``) and zip
    writers need.

    States: ``open`` -> ``written`` (closed) -> ``committed`` | ``failed``, or
    ``discarded`` from any state before ``committed``.
    """

    def __init__(
        self,
        fs: Any,
        path: str,
        *,
        archive: ArchiveConfig,
        dtype: str,
        metadata: Mapping[str, Any] | None = None,
        suffix: str = "",
        exist_ok: bool = True,
        autocommit: bool = True,
    ) -> None:
        self.fs, self.path, self.mode = fs, path, "w+b"
        self.archive, self.dtype, self.suffix = archive, dtype, suffix
        self.metadata = dict(metadata or {})
        self.exist_ok, self.autocommit = exist_ok, autocommit
        self.result: DepositResult | None = None
        self.staged = StagedOutput(archive, path, suffix)
        self._f = self.staged.open("w+b")
        self.state = "open"
        self._outer = sys.exception()  # being handled when opened: not ours

    def __repr__(self) -> str:
        return f"<DepositFile nbank://{self.path} {self.state}>"

    # -- the file interface ------------------------------------------------------
    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self._f.closed

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._f.read(size)

    def readinto(self, buffer: Any) -> int:
        return self._f.readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        return self._f.readline(size)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._f.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: int | None = None) -> int:
        return self._f.truncate(size)

    def fileno(self) -> int:
        return self._f.fileno()

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def close(self) -> None:
        """Finishes the file; outside a transaction, deposits it, unless an
        exception raised since it was opened is propagating (then discards)."""
        if self.state != "open":
            return
        raised = sys.exception()
        if raised is not None and raised is not self._outer:
            self.discard()
            return
        self._finish()
        if self.autocommit:
            self.commit()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        if getattr(self, "state", None) == "open":
            with contextlib.suppress(OSError):
                self.discard()

    # -- commit and discard ------------------------------------------------------
    def commit(self) -> None:
        """Deposits the file (:meth:`nbank_core.StagedOutput.commit`); raises the
        deposit's error (the staged file is gone either way)."""
        self._finish()
        try:
            self.result = self.staged.commit(
                self.fs.registry,
                dtype=self.dtype,
                metadata=self.metadata,
                exist_ok=self.exist_ok,
            )
        except BaseException:
            self.state = "failed"
            self.fs._resolver.forget(self.path)
            raise
        self.state = "committed"
        self.fs._resolver.remember_deposit(self.result, self.archive)
        _refuse_existing(self)

    def discard(self) -> None:
        """Removes the staged file; nothing is registered. Safe to call again."""
        if not self._f.closed:
            self._f.close()
        self.staged.discard()
        if self.state in ("open", "written"):
            self.state = "discarded"

    def _finish(self) -> None:
        if self.state == "open":
            self._f.close()
            self.staged.finish()
            self.state = "written"


def deposit_files(files: Sequence[DepositFile], fs: Any) -> list[DepositResult]:
    """Deposits the written files of a transaction: one :func:`nbank_core.deposit`
    of their staged outputs per archive, datatype and ``exist_ok``. Removes every
    staged file, tells the filesystem's lookup cache what was deposited, and raises
    the first failure (with a note naming the others)."""
    pending = [f for f in files if f.state in ("open", "written")]
    groups: dict[tuple[Path, str, bool], list[DepositFile]] = {}
    for f in pending:
        f._finish()
        groups.setdefault((f.archive.path, f.dtype, f.exist_ok), []).append(f)
    resolver = fs._resolver
    failed: list[DepositFile] = []
    done: list[DepositResult] = []
    try:
        for (_, dtype, exist_ok), group in groups.items():
            items = [
                DepositItem(f.staged.path, name=f.path, metadata=f.metadata)
                for f in group
            ]
            results = deposit(
                group[0].archive,
                items,
                dtype=dtype,
                registry=fs.registry,
                keep_source=False,  # staged in the archive: linked, not copied
                exist_ok=exist_ok,
            )
            for f, r in zip(group, results, strict=True):
                f.result, f.state = r, "committed" if r.ok else "failed"
                if r.ok:
                    done.append(r)
                    resolver.remember_deposit(r, f.archive)
                else:
                    failed.append(f)
    finally:
        for f in pending:
            f.discard()
            if f.state != "committed":
                resolver.forget(f.path)
    for f in pending:
        _refuse_existing(f)
    if failed:
        first = failed[0]
        assert first.result is not None
        try:
            raise_for_result(first.result, f"nbank://{first.path}")
        except Exception as err:
            if len(failed) > 1:
                others = ", ".join(f"'{f.path}'" for f in failed[1:])
                err.add_note(f"also not deposited: {others}")
            raise
    return done


def _refuse_existing(f: DepositFile) -> None:
    """Mode ``xb`` refuses even the same content already archived under the id,
    which a deposit reports as a success (``exists``): nothing was changed."""
    if not f.exist_ok and f.result is not None and f.result.status == "exists":
        raise FileExistsError(
            f"nbank://{f.path} already exists (with the same content): mode 'xb' "
            "(pipe_file mode='create') refuses to write an existing resource"
        )


class DepositTransaction(Transaction):
    """``with fs.transaction:``: deposits every file written in the block when it
    ends normally (one batch per archive and datatype), discards them all
    otherwise, and never leaves a staged file behind."""

    def complete(self, commit: bool = True) -> None:
        fs = self.fs
        files = list(self.files)
        self.files.clear()
        try:
            if commit and files:
                deposit_files(files, fs)
        finally:
            for f in files:
                f.discard()
            if fs is not None:
                fs._intrans = False
                fs._transaction = None
            self.fs = None
