"""A directory as one canonical zip (``nbank deposit --zip-directories``).

The same files give the same bytes, so the same sha1, whoever zips them and
whenever: members sorted by their UTF-8 names, stored (not compressed), dated
1980-01-01 00:00, mode 0644, made on Unix; no directory entries. These are the
rules neurobank 0.13 writes such zips by, so a directory zipped by either client
has one hash.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "rec").mkdir(); _ = (d / "rec" / "a.txt").write_text("a")
>>> zip_directory(d / "rec", d / "rec.zip").name
'rec.zip'
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from nbank_core.errors import AlreadyExists, PolicyError
from nbank_core.fsutil import atomic_output

__all__ = ["zip_directory"]

_DATE = (1980, 1, 1, 0, 0, 0)
_ATTRIBUTES = (0o100644 & 0xFFFF) << 16


def zip_directory(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Writes every file under ``src`` (paths relative to it) to a canonical zip
    at ``out``: a temp file beside it, fsynced, then linked into place (never over
    an existing file: AlreadyExists). PolicyError for a symbolic link in ``src``
    or ``out`` inside ``src``."""
    src, out = Path(src), Path(out)
    if out.resolve().is_relative_to(src.resolve()):
        raise PolicyError(f"'{out}' cannot be written inside '{src}'")
    files = []
    for path in src.rglob("*"):
        if path.is_symlink():
            raise PolicyError(
                f"'{path}' is a symbolic link: zip the directory without it"
            )
        if path.is_file():
            files.append((path.relative_to(src).as_posix().encode("utf-8"), path))
    files.sort(key=lambda entry: entry[0])
    try:
        with atomic_output(out) as fp:
            with zipfile.ZipFile(fp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, path in files:
                    info = zipfile.ZipInfo(name.decode("utf-8"), _DATE)
                    info.external_attr = _ATTRIBUTES
                    info.create_system = 3
                    info.compress_type = zipfile.ZIP_STORED
                    size = path.stat().st_size
                    with (
                        open(path, "rb") as data,
                        zf.open(info, "w", force_zip64=size >= 0xFFFFFFFF) as dest,
                    ):
                        while block := data.read(1 << 20):
                            dest.write(block)
    except FileExistsError:
        raise AlreadyExists(f"'{out}' already exists, not overwriting it") from None
    return out
