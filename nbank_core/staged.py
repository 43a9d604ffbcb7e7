"""Outputs written in place: a file (or directory) made inside the archive's
``staging/`` under the core's staged name, then deposited or discarded.

Every engine that writes a resource (a luigi target, an fsspec file, a
Snakemake job that asks for one) uses this one facility: the bytes never leave
the archive's filesystem, so the deposit links them instead of copying, and
``nbank check`` knows which id a leftover belonged to (``<id>~<token><ext>``).

>>> import tempfile, pathlib
>>> from nbank_core import init_archive
>>> from nbank_core.registry import open_registry
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> arch = init_archive(tmp / "arch", registry="sqlite://" + str(tmp / "r.sqlite"))
>>> reg = open_registry(arch.registry)
>>> _ = reg.add_datatype("txt", "text/plain", "txt")
>>> out = StagedOutput(arch, "note7", ".txt")
>>> with out.open("w") as f:
...     _ = f.write("hello")
>>> result = out.commit(reg, dtype="txt")
>>> result.status, result.path.name, list(arch.staging_dir.iterdir())
('deposited', 'note7.txt', [])
>>> reg.close()
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping
from typing import IO, Any

from nbank_core import ids
from nbank_core.archive import ArchiveConfig
from nbank_core.errors import NbankError
from nbank_core.fsutil import fsync_path
from nbank_core.journal import Journal
from nbank_core.registry import Registry
from nbank_core.transaction import DepositItem, DepositResult, deposit, staged_name

__all__ = ["StagedOutput", "raise_for_result"]

log = logging.getLogger(__name__)
_WRITE_MODES = frozenset({"w", "wb", "w+", "w+b", "wb+", "r+", "r+b", "rb+", "a", "ab"})


class StagedOutput:
    """An output for the id ``ident`` being written in ``archive``'s staging area.

    ``suffix`` (``""`` or ``.ext``) is kept as the archived file's extension.
    With ``directory``, the staged entry is an empty directory to fill. The entry
    exists from construction until :meth:`commit` or :meth:`discard` (with
    ``create=False`` only the unused name is chosen, for a tool that makes the
    file or directory itself).
    """

    def __init__(
        self,
        archive: ArchiveConfig,
        ident: str,
        suffix: str = "",
        *,
        directory: bool = False,
        create: bool = True,
    ) -> None:
        self.archive = archive
        self.id = ids.validate_id(ident)
        self.suffix = suffix
        self.directory = directory
        staging = archive.staging_dir
        if not staging.is_dir():
            staging.mkdir(mode=archive.shard_mode() & 0o777, exist_ok=True)
        self.path = staging / staged_name(self.id, suffix)
        # a journal entry says an engine on this host writes it: 'nbank check
        # --fix' leaves it alone while this process runs
        self._journal = Journal(staging)
        self._journal.add(self.path, self.id, self.path, "output")
        self._journal.write()
        if not create:
            pass  # the caller makes the entry (a tool that wants a new path)
        elif directory:
            self.path.mkdir(mode=0o777)
        else:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        self.result: DepositResult | None = None
        self.done = False

    def open(
        self,
        mode: str = "wb",
        *,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> IO[Any]:
        """Opens the staged file for writing (``w+b`` or ``r+b`` also read back,
        as HDF5 needs); text modes default to UTF-8."""
        if self.directory or mode not in _WRITE_MODES:
            raise ValueError(f"a staged output opens for writing only, not {mode!r}")
        if "b" not in mode and encoding is None:
            encoding = "utf-8"
        return open(self.path, mode, encoding=encoding, newline=newline)  # noqa: SIM115

    def finish(self) -> None:
        """Makes what was written durable (fsync) before it is published."""
        fsync_path(self.path)

    def commit(
        self,
        registry: Registry,
        *,
        dtype: str,
        metadata: Mapping[str, Any] | None = None,
        exist_ok: bool = True,
        hash: bool = True,
        derived: bool = False,
    ) -> DepositResult:
        """Deposits the output under its id and returns the result; the staged
        entry is gone afterwards either way. Identical content already archived
        under the id is a success (``exists``) when ``exist_ok``; any failure
        raises, naming the output. ``derived`` registers the hash in metadata
        (see :func:`~nbank_core.deposit`), for outputs a pipeline computed."""
        if self.done:
            raise ValueError(
                f"the output '{self.id}' was already committed or discarded"
            )
        try:
            self.finish()
            (result,) = deposit(
                self.archive,
                [DepositItem(self.path, name=self.id, metadata=metadata)],
                dtype=dtype,
                registry=registry,
                keep_source=False,  # inside the archive: linked, not copied
                exist_ok=exist_ok,
                hash=hash,
                derived=derived,
            )
        finally:
            self.discard()
        self.result = result
        raise_for_result(result, f"the output '{self.id}'")
        return result

    def discard(self) -> None:
        """Removes the staged entry (if still there); nothing is registered."""
        self.done = True
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            else:
                os.unlink(self.path)
        self._journal.remove()

    def __repr__(self) -> str:
        return f"<StagedOutput '{self.id}' at '{self.path}'>"


def raise_for_result(result: DepositResult, what: str) -> None:
    """Raises the error of a failed deposit result, as the same neurobank error
    class, with a message naming ``what``; does nothing for a success."""
    if result.ok:
        return
    err = result.exception
    message = f"could not deposit {what}: {result.error}"
    if isinstance(err, NbankError):
        raise type(err)(message) from err
    raise OSError(message) from err
