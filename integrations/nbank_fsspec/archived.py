"""Resources in an archive mounted on this host: their files opened under their
ids, and the entries inside directory resources.

A file opened by id is the archived file itself (:class:`ArchivedFile`), so
:func:`fsspec.open_local` and readers that want ``f.name`` get its path, while its
``path`` stays the id: fsspec's caching layers (``blockcache::``, ``filecache::``)
key their records on it. Entries inside a directory resource are named
``<id>/<inner path>``; every one is confined to the resource's directory by
:func:`nbank_core.inner_path` before it is touched.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp()) / "d1"
>>> (root / "sub").mkdir(parents=True)
>>> _ = (root / "sub" / "a.txt").write_text("A")
>>> [(e["name"], e["type"], e["size"]) for e in list_entries("d1", root, "sub")]
[('d1/sub/a.txt', 'file', 1)]
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileOpener

from nbank_core import inner_path

__all__ = ["ArchivedFile", "entry_info", "list_entries"]


class ArchivedFile(LocalFileOpener):
    """The archived file ``local`` of the resource entry ``path`` (an id, or
    ``id/inner``), opened read-only. ``path`` is the name in the filesystem;
    ``name`` (and :func:`fsspec.open_local`) the file on disk."""

    def __init__(self, local: str, path: str, fs: Any) -> None:
        self.local = local
        super().__init__(local, "rb", fs=fs)
        self.path = path

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self.f.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        """Caching layers (``blockcache::``) mark a file closed after closing it."""
        if value and not self.f.closed:
            self.f.close()

    def _open(self) -> None:
        # LocalFileOpener opens self.path; here that is the id, not the file
        path, self.path = self.path, self.local
        try:
            super()._open()
        finally:
            self.path = path


def entry_info(
    name: str, path: Path, st: os.stat_result | None = None
) -> dict[str, Any]:
    """The fsspec info of the entry ``name`` stored at ``path`` (``st``: its
    ``stat``, following links, if already made)."""
    if st is None:
        st = os.stat(path)
    is_dir = stat.S_ISDIR(st.st_mode)
    return {
        "name": name,
        "size": 0 if is_dir else st.st_size,
        "type": "directory" if is_dir else "file",
        "local_path": str(path),
        "mode": st.st_mode,
        "mtime": st.st_mtime,
    }


def list_entries(ident: str, root: Path, inner: str) -> list[dict[str, Any]]:
    """The entries of the directory ``inner`` inside the directory resource
    ``ident`` stored at ``root``, sorted by name. A symbolic link is listed as
    what it leads to, once confined to the resource (IntegrityError if it leads
    out)."""
    base = inner_path(root, inner)
    prefix = f"{ident}/{inner}/" if inner else f"{ident}/"
    out = []
    with os.scandir(base) as it:
        for entry in it:
            path = Path(entry.path)
            if entry.is_symlink():
                path = inner_path(root, f"{inner}/{entry.name}".lstrip("/"))
                try:
                    st = os.stat(path)
                except FileNotFoundError:  # a dangling link names nothing
                    continue
            else:
                st = entry.stat(follow_symlinks=False)
            out.append(entry_info(prefix + entry.name, path, st))
    return sorted(out, key=lambda e: e["name"])
