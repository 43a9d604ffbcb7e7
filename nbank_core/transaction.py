"""The one deposit transaction (module named apart from the `deposit` function it
defines, so `nbank_core.deposit` is always the function): validate, hash, stage,
register, publish, finish.

Every caller (the CLI, Snakemake, luigi, fsspec) deposits through :func:`deposit`.
The order is chosen so that nothing is ever lost:

1. validate the id and the archive's policy; check names already taken (one bulk
   registry call for the batch);
2. hash (in parallel across files);
3. stage inside the archive's ``staging/``: a hard link to the source on the same
   filesystem (the source stays where it is), otherwise a copy that is fsynced and
   re-hashed;
4. register; if that fails, the staged link or copy is removed and the source was
   never touched;
5. publish with a no-clobber link to ``resources/<id[:2]>/<id><ext>`` after setting
   the policy's group and mode; if that fails, the registry record is deleted;
6. fsync the shard directories, and only then remove the source (unless
   ``keep_source``) and the staged name.

A crash at any point leaves the source in place, or the archived file complete
under its final name with its record; ``staging/`` may hold a leftover name.

>>> import tempfile, pathlib
>>> from nbank_core import init_archive
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> arch = init_archive(tmp / "arch", registry="sqlite://" + str(tmp / "r.sqlite"))
>>> from nbank_core.registry import open_registry
>>> with open_registry(arch.registry) as reg:
...     _ = reg.add_datatype("txt", "text/plain")
>>> _ = (tmp / "note1.txt").write_text("hello")
>>> [r.status for r in deposit(arch.path, [tmp / "note1.txt"], dtype="txt")]
['deposited']
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbank_core import hashing, ids
from nbank_core.archive import ArchiveConfig, read_config
from nbank_core.errors import (
    AlreadyExists,
    ArchiveError,
    IntegrityError,
    NbankError,
    NotFound,
    PolicyError,
    RegistryUnavailable,
)
from nbank_core.fsutil import fsync_dir, fsync_path, same_filesystem
from nbank_core.registry import Registry, open_registry

__all__ = [
    "DepositItem",
    "DepositResult",
    "deposit",
    "parse_staged_name",
    "staged_name",
]

_CHUNK = 1024  # files made durable and removed from their source per round
PUBLISH_WAIT = 10.0  # seconds to wait for a concurrent deposit of the same content
STAGED_MARK = "~"  # never in an id: separates the id from the token in staging/


@dataclasses.dataclass(frozen=True)
class DepositItem:
    """A file (or directory) to deposit, under ``name`` (default: its stem)."""

    source: Path
    name: str | None = None
    metadata: Mapping[str, Any] | None = None


@dataclasses.dataclass
class DepositResult:
    """What happened to one item. ``status`` is ``deposited``, ``exists`` (the same
    content was already archived under that id), ``dry-run`` or ``failed``."""

    source: Path
    id: str | None = None
    path: Path | None = None
    sha1: str | None = None
    status: str = "failed"
    error: str | None = None
    exception: BaseException | None = dataclasses.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def as_dict(self) -> dict[str, Any]:
        d = {"source": str(self.source), "id": self.id, "status": self.status}
        if self.path is not None:
            d["path"] = str(self.path)
        if self.sha1 is not None:
            d["sha1"] = self.sha1
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclasses.dataclass
class _Work:
    item: DepositItem
    result: DepositResult
    is_dir: bool = False
    suffix: str = ""
    staged: Path | None = None
    moved: bool = False  # the source itself was renamed into staging
    linked: bool = False  # the staged name is a hard link to the source
    saved_mode: tuple[int, int] | None = None
    adopted: bool = False  # its record exists already, with this content, nowhere
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) when it was hashed


def deposit(
    archive: str | os.PathLike[str] | ArchiveConfig,
    files: Iterable[str | os.PathLike[str] | DepositItem],
    *,
    dtype: str,
    metadata: Mapping[str, Any] | None = None,
    hash: bool = False,
    auto_id: bool = False,
    registry: Registry | None = None,
    auth: tuple[str, str] | None = None,
    dry_run: bool = False,
    keep_source: bool = False,
    exist_ok: bool = False,
    jobs: int | None = None,
    on_result: Callable[[DepositResult], None] | None = None,
) -> list[DepositResult]:
    """Deposits ``files`` into ``archive`` and registers them; returns one result each.

    ``dtype`` must be registered. ``metadata`` is stored with every resource (an
    item's own metadata is merged over it). ``hash`` registers the sha1 even when the
    policy does not require it. ``auto_id`` (or the policy) lets the registry name
    each resource (UUIDs under ``auto_id_type: uuid``). ``registry`` defaults to
    the archive's. ``keep_source`` copies instead of moving. ``exist_ok`` makes a
    deposit of content already archived under the same id a success (``exists``),
    for engines that store an output twice. A failed item does not stop the batch:
    its result says why. Raises only for problems with the whole batch (archive,
    registry or dtype unusable).
    """
    cfg = archive if isinstance(archive, ArchiveConfig) else read_config(archive)
    own = registry is None
    reg = registry if registry is not None else open_registry(cfg.registry, auth=auth)
    try:
        return _Batch(
            cfg,
            reg,
            dtype,
            dict(metadata or {}),
            hash,
            auto_id,
            dry_run,
            keep_source,
            exist_ok,
            on_result,
        ).run(files, jobs)
    finally:
        if own:
            reg.close()


class _Batch:
    def __init__(
        self,
        cfg: ArchiveConfig,
        reg: Registry,
        dtype: str,
        metadata: dict[str, Any],
        hash: bool,
        auto_id: bool,
        dry_run: bool,
        keep_source: bool,
        exist_ok: bool,
        on_result: Callable[[DepositResult], None] | None,
    ) -> None:
        self.cfg, self.reg, self.dtype, self.metadata = cfg, reg, dtype, metadata
        self.auto_id = auto_id or cfg.auto_identifiers
        self.hash = hash or cfg.require_hash or exist_ok
        self.dry_run, self.keep_source, self.exist_ok = dry_run, keep_source, exist_ok
        self.on_result = on_result
        self.archive_name = ""
        self.taken: dict[str, dict[str, Any]] = {}

    # -- the batch ---------------------------------------------------------------
    def run(self, files: Iterable[Any], jobs: int | None) -> list[DepositResult]:
        archive = self.reg.find_archive_by_root(str(self.cfg.path))
        if archive is None:
            raise NotFound(
                f"the archive at '{self.cfg.path}' is not registered in "
                f"{self.reg.url}; did it move? Register it with 'nbank init' or fix "
                "the registry URL in its nbank.json"
            )
        self.archive_name = archive["name"]
        self.reg.get_datatype(self.dtype)  # NotFound names the dtype
        items = [
            f if isinstance(f, DepositItem) else DepositItem(Path(f)) for f in files
        ]
        works = [_Work(i, DepositResult(Path(i.source))) for i in items]
        named = [_item_name(w.item) for w in works]
        if not self.auto_id:
            valid = [n for n in named if n and _valid(n)]
            self.taken = self.reg.get_resources(valid) if valid else {}
        jobs = jobs or (8 if self.reg.url.startswith("http") else 4)
        results: list[DepositResult] = []
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for start in range(0, len(works), _CHUNK):
                chunk = works[start : start + _CHUNK]
                list(pool.map(self._one, chunk))
                self._finish(chunk, pool)
                for w in chunk:
                    results.append(w.result)
                    if self.on_result is not None:
                        self.on_result(w.result)
        return results

    def _one(self, w: _Work) -> None:
        try:
            self._prepare(w)
            if self.dry_run or w.result.status == "exists":
                return
            self._stage(w)
            self._register(w)
            if w.result.status == "exists":
                return
            self._publish(w)
            w.result.status = "deposited"
        except (NbankError, OSError) as err:
            self._unstage(w)
            w.result.status = "failed"
            w.result.error = _describe(err)
            w.result.exception = err

    # -- the steps ---------------------------------------------------------------
    def _prepare(self, w: _Work) -> None:
        src, res = Path(w.item.source), w.result
        st = os.lstat(src)  # FileNotFoundError names the path
        w.stamp = (st.st_size, st.st_mtime_ns)
        if stat.S_ISLNK(st.st_mode):
            raise PolicyError(f"'{src}' is a symbolic link; deposit the file it names")
        w.is_dir = stat.S_ISDIR(st.st_mode)
        if w.is_dir and not self.cfg.allow_directories:
            raise PolicyError(
                f"'{src}' is a directory and the archive's policy forbids "
                "directories (allow_directories in nbank.json)"
            )
        if not w.is_dir and not stat.S_ISREG(st.st_mode):
            raise PolicyError(f"'{src}' is not a regular file")
        w.suffix = src.suffix
        if self.auto_id:
            res.id = ids.uuid_id() if self.cfg.auto_id_type == "uuid" else None
        else:
            res.id = ids.validate_id(_item_name(w.item))
        if self.hash or w.is_dir:
            res.sha1 = hashing.sha1_path(src)
        if res.id is None:
            return
        target = self.cfg.resource_path(res.id, w.suffix)
        record = self.taken.get(res.id)
        w.adopted = record is not None and _dangling(record, res.sha1)
        if record is not None and not w.adopted:
            self._already(w, record)
        elif any(
            os.path.lexists(p) for p in (target, *self.cfg.candidate_paths(res.id))
        ):
            # registered and published by another deposit since the batch began?
            latest = self.reg.get_resources([res.id]).get(res.id)
            if latest is not None:
                self._already(w, latest)
                return
            raise AlreadyExists(
                f"'{target.parent}' already holds a file for '{res.id}' that the "
                "registry does not know; run 'nbank check' on the archive"
            )
        if self.dry_run:
            res.status, res.path = "dry-run", target

    def _already(self, w: _Work, record: Mapping[str, Any]) -> None:
        res = w.result
        if not self.exist_ok:
            raise AlreadyExists(
                f"'{res.id}' is already registered in {self.reg.url}; choose another "
                "name (or -A for an automatic id)"
            )
        if record.get("sha1") != res.sha1:
            raise AlreadyExists(
                f"'{res.id}' is already registered with different content (sha1 "
                f"{record.get('sha1')}, this file {res.sha1}); resources are "
                "immutable: deposit the new content under a new id"
            )
        found = self.cfg.find_file(res.id, record.get("filename"))
        waited = 0.0
        while found is None and waited < PUBLISH_WAIT:
            # another process registered this content and is publishing it now
            time.sleep(0.05)
            waited += 0.05
            found = self.cfg.find_file(res.id, record.get("filename"))
        if found is None:
            raise NotFound(
                f"'{res.id}' is registered with this content but its file is missing "
                f"from {self.cfg.path}; run 'nbank check --fix {self.cfg.path}'"
            )
        res.status, res.path = "exists", found

    def _stage(self, w: _Work) -> None:
        src, cfg = Path(w.item.source), self.cfg
        staging = cfg.staging_dir
        if not staging.is_dir():
            staging.mkdir(mode=cfg.shard_mode() & 0o777, exist_ok=True)
        w.staged = staging / staged_name(w.result.id, w.suffix)
        same_fs = same_filesystem(src, staging)
        if same_fs and not self.keep_source:
            if w.is_dir:
                os.rename(src, w.staged)
                w.moved = True
                return
            try:
                os.link(src, w.staged, follow_symlinks=False)
                w.linked = True
                return
            except OSError as err:
                if err.errno not in (
                    errno.EPERM,
                    errno.EMLINK,
                    errno.ENOTSUP,
                    errno.EXDEV,
                ):
                    raise
        self._copy(w, src)

    def _copy(self, w: _Work, src: Path) -> None:
        assert w.staged is not None
        before = os.stat(src)
        if w.is_dir:
            shutil.copytree(src, w.staged, symlinks=True)
            fsync_path(w.staged)
            copied = hashing.sha1_directory(w.staged)
        else:
            fd = os.open(w.staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                read = hashing.copy_and_hash(src, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            copied = hashing.sha1_file(w.staged)  # what reached the disk
            if copied != read:
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

    def _register(self, w: _Work) -> None:
        res = w.result
        meta = {**self.metadata, **(w.item.metadata or {})}
        if w.adopted:  # a registration cut short before: give its record a place
            self.reg.add_location(res.id, self.archive_name)
            return
        try:
            record = self.reg.add_resource(
                res.id, self.dtype, self.archive_name, sha1=res.sha1, metadata=meta
            )
        except (AlreadyExists, RegistryUnavailable) as err:
            # another process may have registered this name at the same moment
            # (django-neurobank may answer such a race with a 500)
            if res.id is None:
                raise
            try:
                record = self.reg.get_resource(res.id)
            except NotFound:
                if isinstance(err, RegistryUnavailable) and res.sha1:
                    other = self.reg.find_sha1(res.sha1)  # a race on the content?
                    if other is not None:
                        raise AlreadyExists(
                            f"this content is already registered as "
                            f"'{other['name']}' in {self.reg.url}"
                        ) from None
                raise err from None  # the name is free: the sha1 was taken, or down
            if not self.exist_ok:
                raise AlreadyExists(
                    f"'{res.id}' is already registered in {self.reg.url} (by another "
                    "deposit at the same time); choose another name"
                ) from None
            self._already(w, record)
            self._unstage(w)
            return
        res.id = record["name"]

    def _publish(self, w: _Work) -> None:
        assert w.staged is not None and w.result.id is not None
        cfg, res = self.cfg, w.result
        target = cfg.resource_path(res.id, w.suffix)
        try:
            shard = target.parent
            if not shard.is_dir():
                shard.mkdir(mode=cfg.shard_mode() & 0o777, exist_ok=True)
                _set_owner_mode(shard, cfg.uid_gid(), cfg.shard_mode())
            st = os.lstat(w.staged)
            if w.linked and (st.st_size, st.st_mtime_ns) != w.stamp:
                raise IntegrityError(
                    f"'{w.item.source}' changed while it was being deposited; its "
                    "registration was withdrawn. Deposit it again once it is complete"
                )
            w.saved_mode = (st.st_mode, st.st_gid)
            self._apply_policy(w.staged, w.is_dir)
            if w.is_dir:
                if os.path.lexists(target):
                    raise FileExistsError(errno.EEXIST, "exists", str(target))
                os.rename(w.staged, target)
                w.staged, w.moved = None, False
            else:
                os.link(w.staged, target, follow_symlinks=False)
        except (NbankError, OSError) as err:
            self._withdraw(res.id, w.adopted)
            if isinstance(err, NbankError):
                raise
            if isinstance(err, FileExistsError):
                raise AlreadyExists(
                    f"'{target}' appeared while depositing '{res.id}'; its "
                    "registration was withdrawn and the source left in place"
                ) from None
            raise ArchiveError(
                f"could not store '{res.id}' at '{target}' ({_describe(err)}); its "
                "registration was withdrawn and the source left in place"
            ) from err
        except BaseException:
            self._withdraw(res.id, w.adopted)
            raise
        res.path = target

    def _withdraw(self, name: str, adopted: bool = False) -> None:
        """Deletes a record whose file could not be published (an adopted record
        loses only the location this deposit gave it)."""
        try:
            if adopted:
                self.reg.remove_location(name, self.archive_name)
            else:
                self.reg.delete_resource(name)
        except NbankError as err:
            raise ArchiveError(
                f"'{name}' could not be stored and its registration could not be "
                f"withdrawn ({err}); run 'nbank check --fix' on {self.cfg.path}"
            ) from err

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

    def _unstage(self, w: _Work) -> None:
        """Undoes staging: the source is back as it was and staging is clean."""
        staged, w.staged = w.staged, None
        if staged is None:
            return
        with contextlib.suppress(OSError):
            if w.saved_mode is not None:
                os.chmod(staged, stat.S_IMODE(w.saved_mode[0]))
                with contextlib.suppress(PermissionError):
                    os.chown(staged, -1, w.saved_mode[1])
        if w.moved:
            os.rename(staged, w.item.source)
        elif w.is_dir:
            shutil.rmtree(staged, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)

    def _finish(self, chunk: list[_Work], pool: ThreadPoolExecutor) -> None:
        """Makes the chunk's new names durable, then removes sources and staging."""
        done = [w for w in chunk if w.result.status == "deposited"]
        shards = {w.result.path.parent for w in done if w.result.path}
        # concurrent fsyncs of many directories share journal commits
        list(pool.map(fsync_dir, shards))
        sources: set[Path] = set()
        for w in done:
            if w.staged is not None:
                if w.is_dir:
                    _rmtree_writable(w.staged)
                else:
                    os.unlink(w.staged)
            src = Path(w.item.source)
            if not self.keep_source and not w.moved and os.path.lexists(src):
                try:
                    _rmtree_writable(src) if w.is_dir else os.unlink(src)
                    sources.add(src.parent)
                except OSError as err:
                    w.result.error = f"archived, but the source was not removed: {err}"
        if done:
            fsync_dir(self.cfg.staging_dir)
        for d in sources:
            with contextlib.suppress(OSError):
                fsync_dir(d)


def withdraw(cfg: ArchiveConfig, registry: Registry, located: Any) -> Path:
    """Undoes a deposit that its owner explicitly allows to be undone: deletes the
    record of ``located`` (a :class:`~nbank_core.resolve.Located`), then its file
    in the archive ``cfg``; returns the path removed. Raises PolicyError, removing
    nothing, if the file lives outside that archive."""
    path = located.require_path()
    if not Path(os.path.abspath(path)).is_relative_to(cfg.resources_dir.resolve()):
        raise PolicyError(
            f"'{located.id}' is archived at '{path}', outside the archive "
            f"'{cfg.path}'; not removing it"
        )
    registry.delete_resource(located.id)  # the registry says what exists: first
    if path.is_dir() and not path.is_symlink():
        _rmtree_writable(path)
    else:
        path.unlink()
    fsync_dir(path.parent)
    return path


def staged_name(name: str | None, suffix: str) -> str:
    """The name of a deposit's entry in ``staging/``: ``<id>~<token><suffix>``
    (``auto~...`` before the registry names it), so ``nbank check --fix`` can tell
    which resource an interrupted deposit was for."""
    return f"{name or 'auto'}{STAGED_MARK}{uuid.uuid4().hex[:12]}{suffix}"


def parse_staged_name(entry: str) -> tuple[str | None, str]:
    """Returns ``(id or None, suffix)`` from a staging entry's name."""
    name, mark, rest = entry.partition(STAGED_MARK)
    if not mark or name == "auto":
        return None, ""
    dot = rest.find(".")
    return name, rest[dot:] if dot >= 0 else ""


def _item_name(item: DepositItem) -> str:
    """The id an item asks for: its name if given (even an empty one, which is then
    refused), else the file's stem."""
    return item.name if item.name is not None else _stem(item.source)


def _stem(path: Path) -> str:
    p = Path(path)
    return p.stem if p.suffix else p.name


def _dangling(record: Mapping[str, Any], sha1: str | None) -> bool:
    """True for a record of this very content located nowhere: a registration cut
    short (django-neurobank creates a resource, then its location, in two steps),
    which depositing the file again completes instead of failing on the name."""
    return (
        sha1 is not None
        and record.get("sha1") == sha1
        and "locations" in record
        and not record["locations"]
    )


def _valid(name: str) -> bool:
    try:
        ids.validate_id(name)
    except NbankError:
        return False
    return True


def _set_owner_mode(path: Path, owner: tuple[int, int], mode: int) -> None:
    uid, gid = owner
    if uid != -1 or gid != -1:
        with contextlib.suppress(PermissionError):
            os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode, follow_symlinks=False)


def _rmtree_writable(path: Path) -> None:
    for d, _ds, _fs in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(d, stat.S_IMODE(os.lstat(d).st_mode) | stat.S_IRWXU)
    shutil.rmtree(path)


def _describe(err: BaseException) -> str:
    if isinstance(err, NbankError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        where = f" '{err.filename}'" if err.filename else ""
        return f"{err.strerror}:{where}"
    return str(err)
