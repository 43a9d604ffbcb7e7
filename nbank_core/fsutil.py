"""Atomic file operations: temp file in the destination directory, fsync, publish.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(d / "a.txt", "hello\\n")
>>> (d / "a.txt").read_text()
'hello\\n'
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_output",
    "atomic_write_text",
    "fsync_dir",
    "fsync_path",
    "same_filesystem",
]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Makes a directory's entries (new names, removed names) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Makes a file's data durable (directories: every file inside, then the dir)."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        for sub, _dirs, files in os.walk(p):
            for f in files:
                fsync_path(os.path.join(sub, f))
            fsync_dir(sub)
        return
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def same_filesystem(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True if ``a`` and ``b`` are on one filesystem (a rename between them works)."""
    return os.lstat(a).st_dev == os.stat(b).st_dev


def atomic_write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    mode: int = 0o644,
    gid: int = -1,
    overwrite: bool = False,
    durable: bool = True,
) -> None:
    """Writes ``text`` to ``path`` through a temp file in the same directory.

    The temp file is fsynced, given ``mode`` (and group ``gid``), then published:
    with ``overwrite`` by rename, otherwise by a no-clobber link that raises
    FileExistsError if ``path`` appeared meanwhile. The temp file never survives.
    ``durable=False`` skips the fsyncs (the file still appears whole or not at all
    to other processes, but a power failure may lose it).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
            fp.flush()
            os.fchmod(fp.fileno(), mode)
            if gid != -1:
                with contextlib.suppress(PermissionError):
                    os.fchown(fp.fileno(), -1, gid)
            if durable:
                os.fsync(fp.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except OSError as err:
                if err.errno == errno.EEXIST:
                    raise FileExistsError(
                        errno.EEXIST, f"'{target}' already exists", str(target)
                    ) from None
                raise
        if durable:
            fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    tmp_dir: str | os.PathLike[str] | None = None,
) -> Iterator[BinaryIO]:
    """Yields a binary file to write ``path`` through: a temp file (named
    ``fp.name``) in ``tmp_dir`` (default: ``path``'s directory; it must be on the
    same filesystem), fsynced and published when the block ends: with
    ``overwrite`` by rename, else by a no-clobber link (FileExistsError if
    ``path`` exists by then). If the block raises, nothing is published. The
    temp file never survives.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_output(d / "b.bin") as fp:
    ...     _ = fp.write(b"data")
    >>> (d / "b.bin").read_bytes(), sorted(p.name for p in d.iterdir())
    (b'data', ['b.bin'])
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=tmp_dir or target.parent
    )
    os.close(fd)
    try:
        with open(tmp, "wb") as fp:
            yield fp
            fp.flush()
            os.fsync(fp.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
