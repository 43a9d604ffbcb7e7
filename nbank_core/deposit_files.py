"""The filesystem steps of a deposit: stage each item inside the archive's
``staging/`` (a rename, a hard link or a verified copy), publish it under its
final name with a no-clobber link, give it the policy's owner and mode, undo
staging, and make the batch durable. :class:`FileSteps` is mixed into the batch
of :mod:`nbank_core.deposit_batch`, which holds ``cfg`` and ``opt``.

>>> describe_error(FileNotFoundError(2, "No such file or directory", "x.wav"))
"No such file or directory: 'x.wav'"
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from nbank_core import hashing
from nbank_core.archive import ArchiveConfig
from nbank_core.deposit_types import DepositOptions, Work
from nbank_core.errors import AlreadyExists, ArchiveError, IntegrityError, NbankError
from nbank_core.fsutil import fsync_dir, fsync_path, same_filesystem
from nbank_core.journal import Journal, staged_name

__all__ = ["FileSteps", "describe_error", "rmtree_writable"]


class FileSteps:
    """Staging, publishing and finishing, for a batch with ``cfg`` (the archive)
    and ``opt`` (its :class:`~nbank_core.deposit_types.DepositOptions`)."""

    cfg: ArchiveConfig
    opt: DepositOptions

    def _plan_stage(self, w: Work, journal: Journal) -> None:
        """Chooses the staged name and how the item is staged; journals it."""
        src = Path(w.item.source)
        staging = self.cfg.staging_dir
        if not staging.is_dir():
            staging.mkdir(mode=self.cfg.shard_mode() & 0o777, exist_ok=True)
        w.staged = staging / staged_name(w.result.id, w.suffix)
        same_fs = same_filesystem(src, staging)
        w.linked = self.opt.link_source and same_fs and not w.is_dir
        w.moved = not (self.opt.keep_source or w.linked) and same_fs
        how = "moved" if w.moved else "copied"
        journal.add(w.staged, w.result.id, src, how)

    def _stage(self, w: Work) -> None:
        assert w.staged is not None
        src = Path(w.item.source)
        if w.moved or w.linked:
            try:
                if w.moved:
                    os.rename(src, w.staged)
                else:
                    os.link(src, w.staged, follow_symlinks=False)
                return
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES):
                    raise
                w.moved = w.linked = False
        self._copy(w, src)

    def _copy(self, w: Work, src: Path) -> None:
        assert w.staged is not None
        before = os.stat(src)
        if w.is_dir:
            shutil.copytree(src, w.staged, symlinks=True)
            fsync_path(w.staged)
            copied = hashing.sha1_directory(w.staged)
        else:
            fd = os.open(w.staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with open(src, "rb") as sfd:
                    cloned = hashing.clone_file(sfd.fileno(), fd)
                read = None if cloned else hashing.copy_and_hash(src, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            copied = hashing.sha1_file(w.staged)  # what reached the disk
            if read is not None and copied != read:
                raise IntegrityError(f"the copy of '{src}' in staging is corrupt")
        after = os.stat(src)
        changed = (before.st_size, before.st_mtime_ns) != (
            after.st_size,
            after.st_mtime_ns,
        )
        if changed or (w.result.sha1 is not None and copied != w.result.sha1):
            raise IntegrityError(
                f"'{src}' changed while it was being deposited; nothing was "
                "registered. Deposit it again once it is complete"
            )
        w.result.sha1 = w.result.sha1 or (copied if self.hash else None)

    def _publish(self, w: Work) -> None:
        assert w.staged is not None and w.result.id is not None
        cfg, res = self.cfg, w.result
        target = cfg.resource_path(res.id, w.suffix)
        try:
            self._make_shard(target.parent)
        except OSError as err:
            raise _not_stored(res.id, target, err) from err
        st = os.lstat(w.staged)
        changed = (st.st_size, st.st_mtime_ns) != w.stamp
        if (w.moved or w.linked) and not w.is_dir and changed:
            raise IntegrityError(
                f"'{w.item.source}' changed while it was being deposited; its "
                "registration was withdrawn. Deposit it again once it is complete"
            )
        w.saved_mode = (st.st_mode, st.st_gid)
        self._apply_policy(w.staged, w.is_dir)
        try:
            if w.is_dir:
                if os.path.lexists(target):
                    raise FileExistsError(errno.EEXIST, "exists", str(target))
                os.rename(w.staged, target)
                w.staged = None
            else:
                os.link(w.staged, target, follow_symlinks=False)
        except FileExistsError:
            raise AlreadyExists(
                f"'{target}' appeared while depositing '{res.id}'; its "
                "registration was withdrawn and the source left in place"
            ) from None
        except OSError as err:
            raise _not_stored(res.id, target, err) from err
        res.path = target

    def _make_shard(self, shard: Path) -> None:
        if not shard.is_dir():
            shard.mkdir(mode=self.cfg.shard_mode() & 0o777, exist_ok=True)
            _set_owner_mode(shard, self.cfg.uid_gid(), self.cfg.shard_mode())

    def _apply_policy(self, path: Path, is_dir: bool) -> None:
        uid, gid = self.cfg.uid_gid()
        paths = [path]
        if is_dir:
            paths += [Path(d) / n for d, ds, fs in os.walk(path) for n in (*ds, *fs)]
        for p in reversed(paths):  # innermost first, so read-only dirs come last
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = self.cfg.resource_mode(stat.S_ISDIR(st.st_mode), st.st_mode)
            _set_owner_mode(p, (uid, gid), mode)

    def _unstage(self, w: Work) -> None:
        """Undoes staging: the source is back as it was and staging is clean."""
        staged, w.staged = w.staged, None
        if staged is None:
            return
        with contextlib.suppress(OSError):
            if w.saved_mode is not None:
                if w.is_dir:
                    _make_writable(staged)
                os.chmod(staged, stat.S_IMODE(w.saved_mode[0]))
                with contextlib.suppress(PermissionError):
                    os.chown(staged, -1, w.saved_mode[1])
        if w.moved:
            os.rename(staged, w.item.source)
            w.moved = False
        elif w.is_dir:
            shutil.rmtree(staged, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)

    def _finish(self, chunk: list[Work], pool: Any) -> None:
        """Makes the chunk's new names durable, then removes staged names and the
        sources of copies that were moves across filesystems."""
        done = [w for w in chunk if w.result.status == "deposited"]
        shards = {w.result.path.parent for w in done if w.result.path}
        # concurrent fsyncs of many directories share journal commits
        list(pool.map(fsync_dir, shards))
        sources: set[Path] = set()
        for w in done:
            if w.staged is not None:
                if w.is_dir:
                    rmtree_writable(w.staged)
                else:
                    os.unlink(w.staged)
            src = Path(w.item.source)
            keep = self.opt.keep_source or self.opt.link_source
            if not keep and not w.moved and os.path.lexists(src):
                try:
                    rmtree_writable(src) if w.is_dir else os.unlink(src)
                    sources.add(src.parent)
                except OSError as err:
                    w.result.error = f"archived, but the source was not removed: {err}"
            elif w.moved:
                sources.add(src.parent)
        if done and not self._sources_stay():  # else each staged name is a spare
            fsync_dir(self.cfg.staging_dir)
        for d in sources:
            with contextlib.suppress(OSError):
                fsync_dir(d)


def _set_owner_mode(path: Path, owner: tuple[int, int], mode: int) -> None:
    uid, gid = owner
    if uid != -1 or gid != -1:
        with contextlib.suppress(PermissionError):
            os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode, follow_symlinks=False)


def _make_writable(path: Path) -> None:
    for d, _ds, _fs in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(d, stat.S_IMODE(os.lstat(d).st_mode) | stat.S_IRWXU)


def rmtree_writable(path: Path) -> None:
    _make_writable(path)
    shutil.rmtree(path)


def describe_error(err: BaseException) -> str:
    if isinstance(err, NbankError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        where = f" '{err.filename}'" if err.filename else ""
        return f"{err.strerror}:{where}"
    return str(err)


def _not_stored(ident: str, target: Path, err: OSError) -> ArchiveError:
    return ArchiveError(
        f"could not store '{ident}' at '{target}' ({describe_error(err)}); its "
        "registration was withdrawn and the source left in place"
    )
