"""Reading resources: whole, by range, in bulk, copied out, or opened as files.

A mixin of :class:`~nbank_fsspec.NbankFileSystem`: every read resolves its path
with the filesystem's ``_entry`` (the id through the shared lookup cache, an inner
path confined to its directory resource), then reads the file on this host
(:class:`~nbank_fsspec.archived.ArchivedFile`) or, for a resource no archive here
holds, through the registry's download methods
(:class:`~nbank_fsspec.download.RemoteFile`).

>>> _bounds(-3, None, 10)
(7, 10)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from glob import has_magic
from pathlib import Path
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractFileSystem

from nbank_core import Located, NotFound
from nbank_fsspec.archived import ArchivedFile
from nbank_fsspec.download import SMALL, RemoteFile
from nbank_fsspec.errors import builtin_errors

__all__ = ["Reading"]


class Reading(AbstractFileSystem):
    """Mixin: the reading operations of ``nbank://``."""

    @builtin_errors
    def open_local(self, path: Any) -> str:
        """The archived file (or directory) of the id on this host;
        FileNotFoundError saying where the resource lives if no archive holding it
        is mounted here."""
        loc, _, local = self._entry(path)
        return str(loc.require_path() if local is None else local)

    @builtin_errors
    def cat_file(
        self, path: Any, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """The bytes ``start:end`` (negative: from the end) of the resource, in one
        read of the local file or one request to the registry."""
        loc, _, local = self._entry(path)
        return self._read(loc, local, start, end)

    @builtin_errors
    def cat(
        self, path: Any, recursive: bool = False, on_error: str = "raise", **kwargs: Any
    ) -> Any:
        """As fsspec's; for a list, the ids are resolved with bulk requests first,
        and those answers serve every read however long the reads take."""
        if not isinstance(path, list | tuple):
            return super().cat(path, recursive=recursive, on_error=on_error, **kwargs)
        names = list(dict.fromkeys(self._strip_protocol(p) for p in path))
        located = self.locate(names)
        out: dict[str, Any] = {}
        for name in names:
            try:
                ident, _, inner = self._split(name)  # an invalid id raises why
                loc = located.get(ident)
                if loc is None:
                    raise NotFound(
                        f"'{ident}' is not registered in {self.registry.url}"
                    )
                local = self._local(loc, inner)
                out[name] = self._read(
                    loc, local, kwargs.get("start"), kwargs.get("end")
                )
            except (OSError, ValueError) as err:
                if on_error == "raise":
                    raise
                if on_error == "return":
                    out[name] = err
        return out

    def get(
        self,
        rpath: Any,
        lpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """As fsspec's. A resource got into an existing local directory (or one
        written with a trailing ``/``) lands inside it under its name, as a file
        does from fsspec's other filesystems (an id has no ``/`` for fsspec to
        find its parent by)."""
        if (
            isinstance(rpath, str)
            and isinstance(lpath, str | os.PathLike)
            and not has_magic(rpath)
            and not rpath.endswith("/")
        ):
            name = self._strip_protocol(rpath)
            dest = os.fspath(lpath)
            if name and "/" not in name and (dest.endswith("/") or os.path.isdir(dest)):
                lpath = os.path.join(dest, name)
        return super().get(
            rpath,
            lpath,
            recursive=recursive,
            callback=callback,
            maxdepth=maxdepth,
            **kwargs,
        )

    def _read(
        self, loc: Located, local: Path | None, start: int | None, end: int | None
    ) -> bytes:
        if local is not None:
            with _missing_entry(loc), open(local, "rb") as f:
                lo, hi = _bounds(start, end, os.fstat(f.fileno()).st_size)
                f.seek(lo)
                return f.read(max(hi - lo, 0))
        if (start or 0) < 0 or (end is not None and end < 0):  # needs the size
            lo, hi = _bounds(start, end, self.registry.download_size(loc.id))
            return self.registry.read_download(loc.id, lo, hi)
        return self.registry.read_download(loc.id, start or 0, end)

    def _open_read(
        self,
        path: Any,
        block_size: int | None,
        cache_options: dict[str, Any] | None,
        **kwargs: Any,
    ) -> Any:
        loc, inner, local = self._entry(path)
        if local is not None:
            with _missing_entry(loc):
                return ArchivedFile(
                    str(local), f"{loc.id}/{inner}" if inner else loc.id, self
                )
        size = self.registry.download_size(loc.id)
        data = self.registry.read_download(loc.id) if size <= SMALL else None
        return RemoteFile(
            self,
            loc.id,
            self.registry,
            size,
            data,
            block_size=block_size or "default",
            cache_options=cache_options,
            **kwargs,
        )


@contextlib.contextmanager
def _missing_entry(loc: Located) -> Iterator[None]:
    """Opening an entry that is not there (inside a directory resource, or
    inside a file resource, which has no entries) is FileNotFoundError."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError) as err:
        raise NotFound(
            f"no such entry in the resource '{loc.id}': '{err.filename}' does not "
            "exist (fs.ls() or fs.find() shows what it holds)"
        ) from None


def _bounds(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """Python-slice bounds ``start:end`` within a file of ``size`` bytes.

    >>> _bounds(-3, None, 10), _bounds(2, -1, 10), _bounds(None, 99, 10)
    ((7, 10), (2, 9), (0, 10))
    """
    lo = (
        0
        if start is None
        else (max(size + start, 0) if start < 0 else min(start, size))
    )
    hi = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
    return lo, hi
