"""Writing an output: a temp file inside the archive's ``staging/``, deposited when
it is closed without error, removed in every case.

The temp file lives in the archive, so the deposit hard-links it instead of
copying (``keep_source=False``). If the block that writes it raises, or the file
is dropped unclosed, nothing is deposited: no file, no staging leftover, no
registry record.

>>> import tempfile, pathlib
>>> from nbank_core import init_archive
>>> from nbank_core.registry import open_registry
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> arch = init_archive(tmp / "arch", registry="sqlite://" + str(tmp / "r.sqlite"))
>>> reg = open_registry(arch.registry)
>>> _ = reg.add_datatype("txt", "text/plain", "txt")
>>> plan = DepositPlan(arch, reg, "note7", "txt", {}, ".txt")
>>> with DepositingFile(plan, "w") as f:
...     _ = f.write("hello")
>>> f.result.status, f.result.path.name
('deposited', 'note7.txt')
>>> sorted(p.name for p in arch.staging_dir.iterdir())
[]
>>> reg.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from nbank_core import (
    AlreadyExists,
    ArchiveConfig,
    DepositItem,
    DepositResult,
    NbankError,
    NotFound,
    Registry,
    RegistryError,
    RegistryUnavailable,
    deposit,
)

__all__ = ["DepositPlan", "DepositingFile", "remove_temp"]

#: seconds a deposit that lost a race waits for the winner's file to appear
PUBLISH_WAIT = 5.0


@dataclasses.dataclass(frozen=True)
class DepositPlan:
    """Everything needed to deposit one output: where, under which id, as what."""

    archive: ArchiveConfig
    registry: Registry
    id: str
    dtype: str
    metadata: Mapping[str, Any]
    suffix: str = ""
    on_commit: Callable[[DepositResult], None] | None = None

    def temp_path(self) -> Path:
        """A new, unused name in the archive's staging directory, ending in the
        output's suffix (the deposit keeps it as the file's extension)."""
        staging = self.archive.staging_dir
        staging.mkdir(exist_ok=True)
        return staging / f"luigi-{uuid.uuid4().hex[:12]}-{self.id}{self.suffix}"

    def commit(self, path: Path) -> DepositResult:
        """Deposits the file at ``path`` under the plan's id. Identical content
        already archived under that id is a success (status ``exists``); anything
        else that fails raises, saying which output and why."""
        (result,) = deposit(
            self.archive,
            [DepositItem(path, name=self.id)],
            dtype=self.dtype,
            metadata=self.metadata,
            registry=self.registry,
            keep_source=False,  # in staging already: hard-linked, not copied
            exist_ok=True,
        )
        if not result.ok and not self._settled(result):
            err = result.exception
            message = f"could not deposit the output '{self.id}': {result.error}"
            if isinstance(err, NbankError):
                raise type(err)(message) from err
            raise OSError(message) from err
        if self.on_commit is not None:
            self.on_commit(result)
        return result

    def _settled(self, result: DepositResult) -> bool:
        """True if a failed deposit lost a race to a concurrent deposit of the
        same content (another worker running the same task): that one registers
        before it publishes, so its file may take a moment to appear. Updates
        ``result`` to ``exists``; raises if the id holds other content."""
        if result.sha1 is None or not isinstance(
            result.exception, NotFound | AlreadyExists | RegistryUnavailable
        ):  # a server may answer 500 to the second of two identical creations
            return False
        deadline = time.monotonic() + PUBLISH_WAIT
        while True:
            try:
                record = self.registry.get_resource(self.id)
            except NotFound:
                record = None
            except RegistryError:
                return False  # the original error says it better
            if record is not None:
                if record.get("sha1") != result.sha1:
                    raise AlreadyExists(
                        f"could not deposit the output '{self.id}': it is already "
                        f"registered with different content (sha1 "
                        f"{record.get('sha1')}, this output {result.sha1}); "
                        "resources are immutable: give the new output a new id"
                    ) from result.exception
                found = self.archive.find_file(self.id, record.get("filename"))
                if found is not None:
                    result.status, result.path = "exists", found
                    result.error = result.exception = None
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def remove_temp(path: Path) -> None:
    """Removes a temp file or directory if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)


class DepositingFile:
    """A file open for writing that is deposited by :meth:`close` and discarded if
    the ``with`` block raises (or the object is dropped unclosed). Text or binary,
    as ``mode`` says."""

    def __init__(
        self,
        plan: DepositPlan,
        mode: str = "w",
        *,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> None:
        self.plan = plan
        self.result: DepositResult | None = None
        self._done = True
        self.path = plan.temp_path()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if "b" in mode:
                self._file: IO[Any] = os.fdopen(fd, "wb")
            else:
                self._file = os.fdopen(
                    fd, "w", encoding=encoding or "utf-8", newline=newline
                )
        except BaseException:
            os.close(fd)
            remove_temp(self.path)
            raise
        self._done = False

    # -- the file ----------------------------------------------------------------
    def write(self, data: Any) -> int:
        return self._file.write(data)

    def writelines(self, lines: Any) -> None:
        self._file.writelines(lines)

    def flush(self) -> None:
        self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return self._file.seekable()

    @property
    def closed(self) -> bool:
        return self._done

    @property
    def name(self) -> str:
        return str(self.path)

    def __getattr__(self, name: str) -> Any:
        if name == "_file":  # __init__ failed before opening it
            raise AttributeError(name)
        return getattr(self._file, name)

    # -- commit or discard ---------------------------------------------------------
    def close(self) -> None:
        """Closes and deposits the file; the temp file is gone afterwards."""
        if self._done:
            return
        self._done = True
        try:
            self._file.close()
            self.result = self.plan.commit(self.path)
        finally:
            remove_temp(self.path)

    def discard(self) -> None:
        """Closes and removes the file without depositing anything."""
        if self._done:
            return
        self._done = True
        try:
            with contextlib.suppress(OSError):  # e.g. a full disk failing the flush
                self._file.close()
        finally:
            remove_temp(self.path)

    def __enter__(self) -> DepositingFile:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self.discard()

    def __repr__(self) -> str:
        return f"<DepositingFile for '{self.plan.id}' at '{self.path}'>"
