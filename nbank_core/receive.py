"""Writing a resource's bytes somewhere new, atomically and checked: a plain file
(``fetch``, an export to a directory) or a resource file in an archive (``copy``,
``archive import-tar``).

Every write goes to a temp file in the destination's own directory (an archive's
``staging/``), is hashed as it is written, fsynced, compared with the registered
sha1, and only then published: by a no-clobber link, or a rename where
overwriting was asked for. On any error the temp file is removed.

>>> import io, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_stream(io.BytesIO(b"hi"), d / "a.txt", sha1=None).read_bytes()
b'hi'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from nbank_core import hashing
from nbank_core.archive import ArchiveConfig
from nbank_core.errors import AlreadyExists, IntegrityError, PolicyError
from nbank_core.fsutil import atomic_output, fsync_dir, fsync_path

__all__ = ["copy_into_archive", "store_stream", "write_file", "write_stream"]


def _mismatch(what: str, want: str, got: str) -> IntegrityError:
    return IntegrityError(
        f"SHA1 hash of {what} ({got}) does not match the registered hash: expected "
        f"{want}. Deleted the copy for safety; the source may be corrupt: run "
        "'nbank check' on the archive it came from"
    )


def write_stream(
    source: BinaryIO,
    target: str | os.PathLike[str],
    *,
    sha1: str | None,
    overwrite: bool = False,
    tmp_dir: str | os.PathLike[str] | None = None,
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Writes what ``source`` holds to ``target``, checked against ``sha1`` (hex;
    None: unchecked). ``tmp_dir`` (default: ``target``'s directory) must be on
    ``target``'s filesystem; ``finish(temp path)`` runs before it is published
    (owner, mode). Raises AlreadyExists unless ``overwrite``, IntegrityError on a
    mismatch; either way nothing is left behind."""
    target = Path(target)
    want = None if sha1 is None else sha1.lower().removeprefix("sha1:")
    try:
        with atomic_output(target, overwrite=overwrite, tmp_dir=tmp_dir) as out:
            got = hashing._hash_stream(source, copy_to=out)
            if want is not None and got != want:
                raise _mismatch(f"the copy written for '{target.name}'", want, got)
            if finish is not None:
                out.flush()
                finish(Path(out.name))
    except FileExistsError:
        raise AlreadyExists(f"'{target}' already exists, not overwriting it") from None
    return target


def write_file(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    sha1: str | None,
    overwrite: bool = False,
) -> Path:
    """Copies the file ``source`` to ``target`` as :func:`write_stream` does."""
    with open(source, "rb", buffering=0) as src:
        return write_stream(src, target, sha1=sha1, overwrite=overwrite)


def _target(cfg: ArchiveConfig, name: str, filename: str) -> Path:
    found = cfg.find_file(name)
    if found is not None:
        raise AlreadyExists(f"'{name}' is already in the archive at '{found}'")
    target = cfg.resource_path(name, Path(filename).suffix)
    shard = target.parent
    if not shard.is_dir():
        shard.mkdir(mode=cfg.shard_mode() & 0o777, exist_ok=True)
        uid, gid = cfg.uid_gid()
        if (uid, gid) != (-1, -1):
            os.chown(shard, uid, gid)
        os.chmod(shard, cfg.shard_mode())
    return target


def _owner_mode(cfg: ArchiveConfig, path: Path, is_dir: bool) -> None:
    uid, gid = cfg.uid_gid()
    if (uid, gid) != (-1, -1):
        os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, cfg.resource_mode(is_dir, os.lstat(path).st_mode))


def store_stream(
    cfg: ArchiveConfig,
    name: str,
    filename: str,
    source: BinaryIO,
    *,
    sha1: str | None,
) -> Path:
    """Stores the file ``source`` holds in the archive ``cfg`` as the resource
    ``name`` (``filename`` gives the suffix kept), checked against ``sha1``, with
    the policy's owner and mode. Raises AlreadyExists if the archive holds a file
    of ``name``; on any error nothing is left behind."""
    target = _target(cfg, name, filename)
    cfg.staging_dir.mkdir(exist_ok=True)
    return write_stream(
        source,
        target,
        sha1=sha1,
        tmp_dir=cfg.staging_dir,
        finish=lambda tmp: _owner_mode(cfg, tmp, False),
    )


def copy_into_archive(
    cfg: ArchiveConfig, name: str, source: Path, *, sha1: str | None
) -> Path:
    """Copies the stored resource ``source`` (a file, or a directory if the
    archive allows them) into the archive ``cfg`` as :func:`store_stream` does."""
    if not source.is_dir():
        with open(source, "rb", buffering=0) as src:
            return store_stream(cfg, name, source.name, src, sha1=sha1)
    if not cfg.allow_directories:
        raise PolicyError(
            f"'{name}' is a directory and the archive at '{cfg.path}' does not "
            "allow directories (policy.allow_directories)"
        )
    target = _target(cfg, name, source.name)
    cfg.staging_dir.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cfg.staging_dir))
    try:
        copy = tmp / source.name
        shutil.copytree(source, copy, symlinks=True, copy_function=shutil.copyfile)
        fsync_path(copy)
        got = hashing.sha1_directory(copy)
        want = None if sha1 is None else sha1.lower().removeprefix("sha1:")
        if want is not None and got != want:
            raise _mismatch(f"the copy of '{name}'", want, got)
        for d, dirs, files in os.walk(copy, topdown=False):
            for n in files:
                if not stat.S_ISLNK(os.lstat(Path(d) / n).st_mode):
                    _owner_mode(cfg, Path(d) / n, False)
            for n in dirs:
                _owner_mode(cfg, Path(d) / n, True)
        _owner_mode(cfg, copy, True)
        if os.path.lexists(target):
            raise AlreadyExists(f"'{target}' already exists, not overwriting it")
        os.rename(copy, target)
        fsync_dir(target.parent)
    finally:
        _rmtree(tmp)
    return target


def _rmtree(path: Path) -> None:
    """Removes a temp tree, making read-only directories of a half-made copy
    writable first."""
    for d, dirs, _files in os.walk(path):
        for n in dirs:
            with contextlib.suppress(OSError):
                os.chmod(Path(d) / n, 0o700)
    shutil.rmtree(path, ignore_errors=True)
