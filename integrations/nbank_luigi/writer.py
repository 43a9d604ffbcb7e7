"""Writing an output: luigi's atomic file, backed by the core's staged output.

:class:`DepositingFile` is a luigi :class:`~luigi.target.AtomicLocalFile` whose
temporary file is a :class:`nbank_core.StagedOutput` (inside the archive's
``staging/``, under the core's staged name) and whose "move to the final
destination" is the deposit (fsync, register, link into place). If the ``with``
block that writes it raises, or the file is dropped unclosed, nothing is
deposited: no file, no staging leftover, no registry record. Text modes wrap it
in luigi's own text wrapper, which leaves that decision to the file.
:func:`open_formatted` writes it through a luigi format's pipes (gzip...).

>>> import tempfile, pathlib
>>> from nbank_core import StagedOutput, init_archive, open_registry
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> arch = init_archive(tmp / "arch", registry="sqlite://" + str(tmp / "r.sqlite"))
>>> reg = open_registry(arch.registry)
>>> _ = reg.add_datatype("txt", "text/plain", "txt")
>>> out = StagedOutput(arch, "note7", ".txt")
>>> with open_output(out, lambda s: s.commit(reg, dtype="txt"), "w") as f:
...     _ = f.write("hello")
>>> f.result.status, f.result.path.name, list(arch.staging_dir.iterdir())
('deposited', 'note7.txt', [])
>>> reg.close()
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import IO, Any

from luigi.format import Format, TextWrapper
from luigi.target import AtomicLocalFile

from nbank_core import DepositResult, StagedOutput

__all__ = [
    "Commit",
    "DepositingFile",
    "FormattedOutput",
    "open_formatted",
    "open_output",
]

Commit = Callable[[StagedOutput], DepositResult]


class DepositingFile(AtomicLocalFile):
    """A binary file open for writing the staged output ``staged``; :meth:`close`
    deposits it with ``commit(staged)`` (its result is kept in ``result``), and
    :meth:`discard` (an exception in the ``with`` block, or the object dropped
    unclosed) removes it."""

    def __init__(self, staged: StagedOutput, commit: Commit) -> None:
        self._settled = True  # nothing to clean up until the file is open
        self.staged = staged
        self.result: DepositResult | None = None
        self._commit = commit
        try:
            super().__init__(str(staged.path))
        except BaseException:
            staged.discard()
            raise
        self._settled = False

    def generate_tmp_path(self, path: str) -> str:
        return path  # the staged output's own name, made by the core

    def move_to_final_destination(self) -> None:
        self.result = self._commit(self.staged)

    def close(self) -> None:
        """Closes and deposits the file; the staged file is gone afterwards."""
        if self._settled:
            return
        self._settled = True
        try:
            io.BufferedWriter.close(self)  # flushes: a full disk fails here
        except BaseException:
            self.staged.discard()
            raise
        self.move_to_final_destination()  # removes the staged file either way

    def discard(self) -> None:
        """Closes and removes the file without depositing anything."""
        if self._settled:
            return
        self._settled = True
        try:
            with contextlib.suppress(OSError):  # e.g. a full disk failing the flush
                io.BufferedWriter.close(self)
        finally:
            self.staged.discard()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __del__(self) -> None:
        if not getattr(self, "_settled", True):
            self.discard()

    def __repr__(self) -> str:
        return f"<DepositingFile for '{self.staged.id}' at '{self.staged.path}'>"


def open_output(
    staged: StagedOutput,
    commit: Commit,
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> IO[Any]:
    """A :class:`DepositingFile` for ``staged``, wrapped as luigi wraps text
    (UTF-8 unless ``encoding`` says otherwise) unless ``mode`` is binary."""
    raw = DepositingFile(staged, commit)
    if "b" in mode:
        return raw  # type: ignore[return-value]
    return TextWrapper(raw, encoding=encoding or "utf-8", newline=newline)  # type: ignore[return-value]


class FormattedOutput:
    """What a luigi format's ``pipe_writer`` made of a :class:`DepositingFile`
    (``stream``), settled as the file: closing it closes the format's pipes,
    then deposits; an exception in the ``with`` block (or a pipe that fails, such
    as a compressor exiting non-zero) discards the output at once, where luigi's
    pipe wrappers would leave the file open until it is garbage-collected.
    Everything else is the format's stream."""

    def __init__(self, stream: Any, raw: DepositingFile) -> None:
        self.stream = stream
        self.raw = raw

    @property
    def result(self) -> DepositResult | None:
        """The deposit's result, once closed."""
        return self.raw.result

    def __getattr__(self, name: str) -> Any:
        if name in {"stream", "raw"}:
            raise AttributeError(name)
        return getattr(self.stream, name)

    def __iter__(self) -> Any:
        return iter(self.stream)

    def __enter__(self) -> FormattedOutput:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def close(self) -> None:
        """Closes the format's pipes and deposits what reached the file."""
        if self.raw._settled:
            return
        try:
            if self.stream is not self.raw:
                self.stream.close()  # a pipe closes the file after its process
        except BaseException:
            self.raw.discard()
            raise
        self.raw.close()  # deposits, unless a pipe's close already did

    def discard(self) -> None:
        """Stops the format's pipes and removes the output; nothing is deposited."""
        try:
            abort = getattr(self.stream, "abort", None)  # luigi's output pipes
            if abort is not None and self.stream is not self.raw:
                with contextlib.suppress(Exception):
                    abort()
        finally:
            self.raw.discard()

    def __del__(self) -> None:
        if not getattr(self.raw, "_settled", True):
            self.discard()

    def __repr__(self) -> str:
        return f"<FormattedOutput {self.stream!r} for '{self.raw.staged.id}'>"


def open_formatted(staged: StagedOutput, commit: Commit, format: Format) -> Any:  # noqa: A002
    """A :class:`DepositingFile` for ``staged`` written through ``format``'s
    ``pipe_writer`` (luigi's formats: bytes or text, as the format says)."""
    raw = DepositingFile(staged, commit)
    try:
        stream = format.pipe_writer(raw)
    except BaseException:
        raw.discard()
        raise
    return FormattedOutput(stream, raw)
