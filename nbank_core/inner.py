"""Entries inside a directory resource: ``<id>/<inner path>``, confined to it.

A resource deposited as a directory (archives with ``allow_directories``) is read
entry by entry by engines that name files inside it (``nbank://ID/sub/file.txt``).
The inner path is written with ``/``; it may not be absolute, hold ``..``, ``.`` or
empty segments, NUL or ``\\``, and what it names must stay inside the resource's
directory once symbolic links are followed: a link leading out of it is refused,
as :meth:`nbank_core.ArchiveConfig.confined` refuses one leading out of a shard
(which is not enough here: a shard holds other resources).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp()) / "d1"
>>> (root / "sub").mkdir(parents=True)
>>> inner_path(root, "sub") == root / "sub", inner_path(root, "") == root
(True, True)
>>> inner_path(root, "sub/../../x")
Traceback (most recent call last):
...
nbank_core.errors.InvalidIdentifier: invalid path 'sub/../../x' inside a resource: ...
"""

from __future__ import annotations

import os
from pathlib import Path

from nbank_core.errors import IntegrityError, InvalidIdentifier

__all__ = ["inner_path"]


def inner_path(root: str | os.PathLike[str], inner: str) -> Path:
    """The entry ``inner`` (``"a/b.txt"``; ``""`` is ``root`` itself) of the
    directory resource stored at ``root``. Raises InvalidIdentifier for a path that
    is not a plain relative one, IntegrityError if a symbolic link leads out of
    ``root``. The entry need not exist (then nothing is checked on disk beyond the
    links that do)."""
    root = Path(root)
    inner = inner.strip("/")
    if not inner:
        return root
    parts = inner.split("/")
    if "\0" in inner or "\\" in inner or any(p in ("", ".", "..") for p in parts):
        raise InvalidIdentifier(
            f"invalid path {inner!r} inside a resource: name entries with '/' "
            "between plain names (no '..', '.', empty names, '\\' or NUL)"
        )
    path = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath((real_root, real)) != real_root:
        raise IntegrityError(
            f"'{inner}' inside the resource at '{root}' is, or passes through, a "
            f"symbolic link to '{real}', outside the resource; refusing to follow "
            "it out of the archive: replace the link with the file itself"
        )
    return path
