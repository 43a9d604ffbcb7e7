"""SHA-1 of files and directories, streamed in large blocks and parallel across files.

Digests are plain lowercase hex here; :func:`prefixed` writes them ``sha1:<hex>``
where a prefix is expected. A directory's hash is the one the existing ``nbank``
client computes: SHA-1 over the sorted lines ``<relative path>=<sha1 of file>``
joined with newlines.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
>>> _ = p.write_bytes(b"abc")
>>> sha1_file(p)
'a9993e364706816aba3e25717850c26c9cd0d89d'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

__all__ = [
    "BLOCK_SIZE",
    "CONTENT_KEY",
    "clone_file",
    "copy_and_hash",
    "default_jobs",
    "hash_many",
    "prefixed",
    "record_sha1",
    "sha1_directory",
    "sha1_file",
    "sha1_path",
]

#: bytes read per block; large enough that hashing runs at the digest's own speed
BLOCK_SIZE = 1 << 20


def default_jobs() -> int:
    """Threads used for hashing several files at once (hashlib releases the GIL)."""
    return max(1, min(8, os.cpu_count() or 1))


def _hash_stream(
    source: BinaryIO,
    copy_to: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
) -> str:
    digest = hashlib.sha1()  # noqa: S324 - content identity, the registry's choice
    buf = bytearray(BLOCK_SIZE)
    view = memoryview(buf)
    while True:
        n = source.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        chunk = view[:n]
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
        if progress is not None:
            progress(n)
    return digest.hexdigest()


def sha1_file(path: str | os.PathLike[str]) -> str:
    """Returns the SHA-1 hex digest of the file at ``path``, streamed."""
    with open(path, "rb", buffering=0) as fp:
        return _hash_stream(fp)


def sha1_directory(path: str | os.PathLike[str]) -> str:
    """Returns the hash of a directory resource, as the existing client computes it.

    Every regular file below ``path`` contributes ``<posix relpath>=<sha1>``; lines
    are sorted by path components and joined with newlines. Directories themselves
    and symbolic links do not contribute.
    """
    root = Path(path)
    files = sorted(
        (
            PurePosixPath(p.relative_to(root).as_posix())
            for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()
        ),
        key=lambda p: p.parts,
    )
    digests = hash_many([root / f for f in files])
    lines = [f"{f}={digests[root / f]}" for f in files]
    return hashlib.sha1("\n".join(lines).encode("utf-8")).hexdigest()  # noqa: S324


def sha1_path(path: str | os.PathLike[str]) -> str:
    """Returns the hash of a file or a directory resource."""
    return sha1_directory(path) if Path(path).is_dir() else sha1_file(path)


def hash_many(
    paths: Iterable[str | os.PathLike[str]], jobs: int | None = None
) -> dict[Path, str]:
    """Hashes many files or directories in parallel; returns ``{Path: hex}``.

    An unreadable path raises its OSError after every other hash has finished.
    """
    items = [Path(p) for p in paths]
    jobs = jobs or default_jobs()
    if len(items) <= 1 or jobs == 1:
        return {p: sha1_path(p) for p in items}
    with ThreadPoolExecutor(max_workers=min(jobs, len(items))) as pool:
        return dict(zip(items, pool.map(sha1_path, items), strict=True))


def copy_and_hash(
    source: str | os.PathLike[str],
    dest_fd: int,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Copies ``source`` into the open file descriptor ``dest_fd`` and returns the
    SHA-1 of what was read. The caller fsyncs and closes ``dest_fd``."""
    with (
        open(source, "rb", buffering=0) as src,
        open(dest_fd, "wb", closefd=False) as dst,
    ):
        return _hash_stream(src, copy_to=dst, progress=progress)


#: the metadata key that holds a derived output's content hash (the registry's
#: ``sha1`` field is unique and meant for sources; see nbank_core.transaction)
CONTENT_KEY = "content_sha1"


def record_sha1(record: Any) -> str | None:
    """The content hash a registry record vouches for: its ``sha1`` field, else
    (a derived output) the ``content_sha1`` key of its metadata.

    >>> record_sha1({"sha1": None, "metadata": {"content_sha1": "ab"}})
    'ab'
    """
    if not isinstance(record, dict):
        return None
    sha1 = record.get("sha1")
    if sha1:
        return str(sha1).lower()
    meta = record.get("metadata")
    value = meta.get(CONTENT_KEY) if isinstance(meta, dict) else None
    return value.lower() if isinstance(value, str) and value else None


def clone_file(source_fd: int, dest_fd: int) -> bool:
    """Makes ``dest_fd`` share ``source_fd``'s blocks (a reflink, copy-on-write)
    where the filesystem can; returns False where it cannot."""
    try:
        import fcntl

        fcntl.ioctl(dest_fd, _FICLONE, source_fd)
    except (OSError, ImportError):
        return False
    return True


_FICLONE = 0x40049409  # Linux ioctl: clone a whole file


def prefixed(hexdigest: str) -> str:
    """Returns ``sha1:<hex>``, the form used where a prefix is expected.

    >>> prefixed("a9993e364706816aba3e25717850c26c9cd0d89d")
    'sha1:a9993e364706816aba3e25717850c26c9cd0d89d'
    """
    return f"sha1:{hexdigest}"
