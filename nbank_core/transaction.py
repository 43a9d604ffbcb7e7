"""The one deposit transaction (module named apart from the `deposit` function it
defines, so `nbank_core.deposit` is always the function): validate, hash, stage,
register, publish, finish.

Every caller (the CLI, Snakemake, luigi, fsspec) deposits through :func:`deposit`.
The order is chosen so that nothing is ever lost and no source ever shares its
inode with an archived file:

1. validate the archive's policy, the ids and the sources (never a file inside an
   archive); check names already taken (one bulk registry call for the batch;
   with a server, only for sources that are gone, as its POST reports the rest);
2. hash (in parallel across files);
3. write the batch's journal in ``staging/.journal/`` (durably), then stage each
   item inside ``staging/``: the source is renamed in on the same filesystem
   (so it is nowhere else), otherwise copied, fsynced and re-hashed (the source
   stays);
4. register; if that fails, the staged item is put back (or the copy removed);
5. publish with a no-clobber link to ``resources/<id[:2]>/<id><ext>`` after setting
   the policy's group and mode; if that fails, the registry record is withdrawn
   and the item put back;
6. fsync the shard directories, remove the staged names, the copied sources (a
   move without ``keep_source`` across filesystems) and the journal.

Each step pushes its undo on a stack, so a failure rolls back exactly the steps
already taken. A crash at any point leaves the source in place or in ``staging/``
with a journal saying where it belongs (``nbank check --fix`` puts it back), or
the archived file complete under its final name with its record. A stop request
(``stop``, set by the command on SIGINT or SIGTERM) lets the items in flight
finish and skips the rest; so do an authentication failure and a few registry
failures in a row.

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
import functools
import logging
import os
import shutil
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbank_core import hashing, ids
from nbank_core.archive import CONFIG_NAME, ArchiveConfig, read_config
from nbank_core.errors import (
    AlreadyExists,
    ArchiveError,
    AuthError,
    IntegrityError,
    NbankError,
    NotFound,
    PolicyError,
    RegistryUnavailable,
)
from nbank_core.fsutil import fsync_dir, fsync_path, same_filesystem
from nbank_core.journal import (
    STAGED_MARK,
    Journal,
    parse_staged_name,
    staged_name,
)
from nbank_core.mounts import registered_archive
from nbank_core.registry import Registry, open_registry

__all__ = [
    "STAGED_MARK",
    "DepositItem",
    "DepositOptions",
    "DepositResult",
    "deposit",
    "parse_staged_name",
    "staged_name",
    "withdraw",
]

log = logging.getLogger(__name__)

_CHUNK = 1024  # files made durable and removed from their source per round
PUBLISH_WAIT = 10.0  # seconds to wait for a concurrent deposit of the same content
FAILURES_IN_A_ROW = 3  # registry failures in a row that stop a batch


@dataclasses.dataclass(frozen=True)
class DepositItem:
    """A file (or directory) to deposit, under ``name`` (default: its stem)."""

    source: Path
    name: str | None = None
    metadata: Mapping[str, Any] | None = None


@dataclasses.dataclass
class DepositResult:
    """What happened to one item. ``status`` is ``deposited``, ``exists`` (the same
    content was already archived under that id), ``dry-run``, ``failed`` or
    ``skipped`` (not attempted: the batch was stopped)."""

    source: Path
    id: str | None = None
    path: Path | None = None
    sha1: str | None = None
    status: str = "failed"
    error: str | None = None
    exception: BaseException | None = dataclasses.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "skipped")

    def as_dict(self) -> dict[str, Any]:
        d = {"source": str(self.source), "id": self.id, "status": self.status}
        if self.path is not None:
            d["path"] = str(self.path)
        if self.sha1 is not None:
            d["sha1"] = self.sha1
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclasses.dataclass(frozen=True)
class DepositOptions:
    """How a batch deposits (see :func:`deposit` for each field)."""

    dtype: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hash: bool = False
    auto_id: bool = False
    dry_run: bool = False
    keep_source: bool = False
    exist_ok: bool = False
    derived: bool = False
    link_source: bool = False
    atomic: bool = False


@dataclasses.dataclass
class _Work:
    item: DepositItem
    result: DepositResult
    is_dir: bool = False
    suffix: str = ""
    staged: Path | None = None
    moved: bool = False  # the source itself was renamed into staging
    linked: bool = False  # staged by a hard link; the caller removes the source
    saved_mode: tuple[int, int] | None = None
    adopted: bool = False  # its record exists already, with this content, nowhere
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) when it was hashed


class _Stop(Exception):
    """The batch was stopped before this item began."""


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
    stop: threading.Event | None = None,
    derived: bool = False,
    link_source: bool = False,
    atomic: bool = False,
) -> list[DepositResult]:
    """Deposits ``files`` into ``archive`` and registers them; returns one result each.

    ``dtype`` must be registered. ``metadata`` is stored with every resource (an
    item's own metadata is merged over it). ``hash`` registers the sha1 even when the
    policy does not require it. ``auto_id`` (or the policy) lets the registry name
    each resource (UUIDs under ``auto_id_type: uuid``). ``registry`` defaults to
    the archive's. ``keep_source`` copies instead of moving. The same content
    already archived under the same id is ``exists``, a success, never a second
    record; ``exist_ok`` also hashes files the policy would not, so engines that
    store an output twice always get that answer. A failed item does not stop the
    batch: its result says why; an authentication failure, a few registry
    failures in a row or ``stop`` being set skip the items not yet begun. Raises
    only for problems with the whole batch (archive, registry or dtype unusable).

    ``derived`` is for outputs an engine made: the registry's ``sha1`` field is
    unique and meant for sources (two empty spike lists could not both be
    registered), so a derived output's hash is registered in its metadata under
    ``content_sha1`` instead, where ``check``, ``verify`` and reruns read it.
    ``link_source`` stages a source on the archive's filesystem by a hard link and
    leaves it in place, for an engine's scratch copy that the engine removes
    itself right after (so nothing is copied).

    ``atomic`` deposits all or nothing (a job's outputs): if any item fails, the
    items this call deposited are withdrawn again (record, then file) and
    reported failed; it needs ``keep_source`` or ``link_source``, so every source
    is still in place then.
    """
    if atomic and not (keep_source or link_source):
        raise ValueError("atomic deposits keep their sources: pass keep_source")
    cfg = archive if isinstance(archive, ArchiveConfig) else read_config(archive)
    options = DepositOptions(
        dtype=dtype,
        metadata=dict(metadata or {}),
        hash=hash,
        auto_id=auto_id,
        dry_run=dry_run,
        keep_source=keep_source,
        exist_ok=exist_ok,
        derived=derived,
        link_source=link_source,
        atomic=atomic,
    )
    own = registry is None
    reg = registry if registry is not None else open_registry(cfg.registry, auth=auth)
    try:
        batch = _Batch(cfg, reg, options, on_result, stop or threading.Event())
        return batch.run(files, jobs)
    finally:
        if own:
            reg.close()


class _InThisThread(contextlib.AbstractContextManager):
    """The part of an executor ``run_chunks`` uses, running each call in turn."""

    def map(self, fn: Callable[..., Any], *items: Iterable[Any]) -> Iterable[Any]:
        return map(fn, *items)

    def __exit__(self, *exc: object) -> None:
        return None


#: per registry object: the archive records and datatypes already checked
_known: weakref.WeakKeyDictionary[Registry, dict[tuple[str, str], Any]] = (
    weakref.WeakKeyDictionary()
)


class _Batch:
    def __init__(
        self,
        cfg: ArchiveConfig,
        reg: Registry,
        options: DepositOptions,
        on_result: Callable[[DepositResult], None] | None,
        stop: threading.Event,
    ) -> None:
        self.cfg, self.reg, self.opt = cfg, reg, options
        self.auto_id = options.auto_id or cfg.auto_identifiers
        self.hash = (
            options.hash or cfg.require_hash or options.exist_ok or options.derived
        )
        self.on_result = on_result
        self.stop = stop
        self.stop_reason: str | None = None
        self.archive_name = ""
        self.taken: dict[str, dict[str, Any]] = {}
        self._failures = 0
        self._lock = threading.Lock()
        self._archives: dict[Path, bool] = {}

    # -- the batch ---------------------------------------------------------------
    def run(self, files: Iterable[Any], jobs: int | None) -> list[DepositResult]:
        # an engine deposits each job's outputs through one registry object: the
        # archive's record and the datatype are looked up once for all its jobs
        # (a later change is refused by the registry's own POST)
        known = _known.setdefault(self.reg, {})
        archive = known.get(("archive", str(self.cfg.path)))
        archive = archive or registered_archive(self.reg, self.cfg)
        if archive is None:
            raise NotFound(
                f"the archive at '{self.cfg.path}' is not registered in "
                f"{self.reg.url}; did it move? Register it again with 'nbank init "
                f"--register {self.cfg.path}', or fix the registry URL in its "
                f"{CONFIG_NAME}"
            )
        self.archive_name = archive["name"]
        known[("archive", str(self.cfg.path))] = archive
        if ("dtype", self.opt.dtype) not in known:
            self.reg.get_datatype(self.opt.dtype)  # NotFound names the dtype
            known[("dtype", self.opt.dtype)] = True
        items = [
            f if isinstance(f, DepositItem) else DepositItem(Path(f)) for f in files
        ]
        works = [_Work(i, DepositResult(Path(i.source))) for i in items]
        _refuse_repeats(works)
        if not self.auto_id:
            todo = [w for w in works if w.result.error is None]
            lazy = self.reg.url.startswith("http") or self.opt.link_source
            if lazy and not self.opt.dry_run:
                # a server's POST says itself that a name is taken (_register then
                # reads that one record), and staging a link costs nothing: look up
                # only the sources that are gone, archived by an interrupted run
                todo = [w for w in todo if not os.path.lexists(w.item.source)]
            named = {_item_name(w.item) for w in todo}
            valid = [n for n in named if n and _valid(n)]
            self.taken = self.reg.get_resources(valid) if valid else {}
        jobs = jobs or (8 if self.reg.url.startswith("http") else 4)
        if self.opt.atomic:
            return self._all_or_nothing(works, jobs)
        return self.run_chunks(works, jobs)

    def run_chunks(self, works: list[_Work], jobs: int) -> list[DepositResult]:
        results: list[DepositResult] = []
        # one item (an engine's job): its steps in this thread, no pool to start
        pool = ThreadPoolExecutor(jobs) if len(works) > 1 else _InThisThread()
        with pool:
            for start in range(0, len(works), _CHUNK):
                chunk = works[start : start + _CHUNK]
                journal = Journal(self.cfg.staging_dir)
                todo = [w for w in chunk if w.result.error is None]
                list(
                    pool.map(
                        functools.partial(self._prepare_safe, journal=journal), todo
                    )
                )
                if not self.opt.dry_run and not self._no_journal(todo):
                    journal.write(durable=not self._sources_stay())
                if start == 0 and todo:  # the first write goes alone: a refused
                    self._one(todo[0])  # login then costs one attempt, not eight
                    todo = todo[1:]
                list(pool.map(self._one, todo))
                self._finish(chunk, pool)
                journal.remove(durable=not self._sources_stay())
                for w in chunk:
                    results.append(w.result)
                    if self.on_result is not None:
                        self.on_result(w.result)
        return results

    def _all_or_nothing(self, works: list[_Work], jobs: int) -> list[DepositResult]:
        """One chunk; if anything failed, withdraws what this call deposited."""
        on_result, self.on_result = self.on_result, None
        self.run_chunks(works, jobs)
        failed = [w for w in works if not w.result.ok]
        if failed:
            why = failed[0].result.error
            for w in works:
                if w.result.status == "deposited":
                    self._roll_back(w, why)
        if on_result is not None:
            for w in works:
                on_result(w.result)
        return [w.result for w in works]

    def _roll_back(self, w: _Work, why: str | None) -> None:
        res = w.result
        assert res.id is not None and res.path is not None
        try:
            self.reg.delete_resource(res.id)
            if res.path.is_dir() and not res.path.is_symlink():
                _rmtree_writable(res.path)
            else:
                os.unlink(res.path)
            fsync_dir(res.path.parent)
        except (NbankError, OSError) as err:
            res.error = (
                f"archived, but could not be withdrawn after another item failed "
                f"({_describe(err)}); run 'nbank check --fix {self.cfg.path}'"
            )
            return
        res.status, res.path = "failed", None
        res.error = (
            f"withdrawn: deposited all or nothing, and another item failed ({why})"
        )

    def _prepare_safe(self, w: _Work, journal: Journal) -> None:
        try:
            self._check_stop()
            self._prepare(w)
            if not self.opt.dry_run and w.result.status == "failed":
                self._plan_stage(w, journal)
        except _Stop as stop:
            self._skip(w, str(stop))
        except (NbankError, OSError) as err:
            self._fail(w, err)

    def _one(self, w: _Work) -> None:
        if w.result.status != "failed" or w.result.error is not None:
            return  # exists, dry-run, skipped, or failed in preparation
        try:
            self._check_stop()
        except _Stop as stop:
            self._skip(w, str(stop))
            return
        try:
            with contextlib.ExitStack() as undo:
                self._stage(w)
                undo.callback(self._unstage, w)
                twin = self._register(w)
                if w.result.status == "exists":
                    return  # the undo puts the source back
                if twin is None:
                    undo.callback(self._withdraw, w)
                    self._publish(w)
                else:  # never withdraw a record that may be another's
                    try:
                        self._publish(w)
                    except AlreadyExists:
                        self._already(w, twin)
                        return
                undo.pop_all()
            w.result.status = "deposited"
            self._count(None)
        except (NbankError, OSError) as err:
            if isinstance(err, AuthError) and self.stop.is_set():
                self._skip(w, self.stop_reason or str(err))  # said once already
                return
            self._count(err)
            self._fail(w, err)

    # -- stopping ----------------------------------------------------------------
    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise _Stop(self.stop_reason or "not attempted: the deposit was stopped")

    def _count(self, err: BaseException | None) -> None:
        """Stops the batch on an authentication failure, or after a few registry
        failures in a row."""
        with self._lock:
            if isinstance(err, AuthError):
                self._halt("not attempted: the registry refused the login")
            elif isinstance(err, RegistryUnavailable):
                self._failures += 1
                if self._failures >= FAILURES_IN_A_ROW:
                    self._halt(
                        f"not attempted: the registry failed {self._failures} times "
                        f"in a row (last: {err})"
                    )
            else:
                self._failures = 0

    def _halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            log.info("stopping the deposit batch: %s", reason)
            self.stop.set()

    def _skip(self, w: _Work, reason: str) -> None:
        w.result.status, w.result.error = "skipped", reason

    def _fail(self, w: _Work, err: BaseException) -> None:
        w.result.status = "failed"
        w.result.error = _describe(err)
        w.result.exception = err
        log.debug("%s: %s", w.item.source, w.result.error)

    # -- the steps ---------------------------------------------------------------
    def _prepare(self, w: _Work) -> None:
        src, res = Path(w.item.source), w.result
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            if self._archived_already(w):
                return
            raise
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
        self._refuse_inside_archive(src)
        w.suffix = src.suffix
        if self.auto_id:
            res.id = ids.uuid_id() if self.cfg.auto_id_type == "uuid" else None
        else:
            res.id = ids.validate_id(_item_name(w.item))
        if res.id is not None:
            _check_name_length(res.id, w.suffix if self.cfg.keep_extensions else "")
        if self.hash or w.is_dir:
            res.sha1 = hashing.sha1_path(src)
        if res.id is None:  # the registry names it when it is registered
            if self.opt.dry_run:
                res.status = "dry-run"
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
        if self.opt.dry_run:
            res.status, res.path = "dry-run", target

    def _archived_already(self, w: _Work) -> bool:
        """For a source that is gone: True (status ``exists``) if its id is
        registered and archived here, as after an interrupted run of the same
        deposit whose item was archived before the interruption."""
        if self.auto_id or w.item.name is not None:
            return False
        name = _item_name(w.item)
        if not _valid(name):
            return False
        record = self.taken.get(name)
        if record is None or self.archive_name not in (record.get("locations") or ()):
            return False
        found = self.cfg.find_file(name, record.get("filename"))
        if found is None:
            return False
        w.result.id, w.result.path, w.result.sha1 = name, found, record.get("sha1")
        w.result.status = "exists"
        w.result.error = None
        return True

    def _refuse_inside_archive(self, src: Path) -> None:
        """Refuses a source inside an archive (its nbank.json, its resources),
        except an engine's output staged in this archive's ``staging/``."""
        real = Path(os.path.realpath(src))
        if real.parent == Path(os.path.realpath(self.cfg.staging_dir)):
            return
        for parent in real.parents:
            inside = self._archives.get(parent)
            if inside is None:
                inside = (parent / CONFIG_NAME).is_file() and (
                    parent / "resources"
                ).is_dir()
                self._archives[parent] = inside
            if inside:
                raise PolicyError(
                    f"'{src}' is inside the archive '{parent}'; files in an archive "
                    "are never deposited (copy it out first)"
                )

    def _already(self, w: _Work, record: Mapping[str, Any]) -> None:
        """The id is taken: the same content archived here is ``exists`` (waiting
        a moment for a concurrent deposit to publish it); else an error."""
        res = w.result
        known = hashing.record_sha1(record)
        same = res.sha1 is not None and known == res.sha1
        if not same:
            if known and res.sha1:
                raise AlreadyExists(
                    f"'{res.id}' is already registered with different content (sha1 "
                    f"{known}, this file {res.sha1}); resources are "
                    "immutable: deposit the new content under a new id"
                )
            raise AlreadyExists(
                f"'{res.id}' is already registered in {self.reg.url}; choose another "
                "name (or -A for an automatic id)"
            )
        found = self.cfg.find_file(res.id, record.get("filename"))
        deadline = time.monotonic() + PUBLISH_WAIT
        while found is None and time.monotonic() < deadline:
            # another process registered this content and is publishing it now
            time.sleep(0.05)
            found = self.cfg.find_file(res.id, record.get("filename"))
        if found is None:
            raise NotFound(
                f"'{res.id}' is registered with this content but its file is missing "
                f"from {self.cfg.path}; run 'nbank check --fix {self.cfg.path}'"
            )
        res.status, res.path = "exists", found

    def _plan_stage(self, w: _Work, journal: Journal) -> None:
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

    def _stage(self, w: _Work) -> None:
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

    def _register(self, w: _Work) -> Mapping[str, Any] | None:
        """Registers the item. Returns None, or the record found after a write
        whose answer was lost (a timeout, a server error) when that record holds
        this very content: the write was committed, by this deposit or by a
        concurrent one of the same content, so it is not withdrawn on failure."""
        res = w.result
        meta = {**self.opt.metadata, **(w.item.metadata or {})}
        sha1 = res.sha1
        if self.opt.derived and sha1 is not None:  # see deposit(): not the field
            meta[hashing.CONTENT_KEY], sha1 = sha1, None
        if w.adopted:  # a registration cut short before: give its record a place
            self.reg.add_location(res.id, self.archive_name)
            return None
        try:
            record = self.reg.add_resource(
                res.id, self.opt.dtype, self.archive_name, sha1=sha1, metadata=meta
            )
        except (AlreadyExists, RegistryUnavailable) as err:
            # the name was taken by another process at the same moment, or a write
            # timed out or failed after the server committed it: read what is there
            if res.id is None:
                raise
            try:
                record = self.reg.get_resource(res.id)
            except NotFound:
                raise err from None  # the name is free: the sha1 was taken, or down
            lost = isinstance(err, RegistryUnavailable)
            if lost and _is_ours(
                record, res.sha1, self.opt.dtype, meta, self.archive_name
            ):
                log.info("'%s' was registered although the answer was lost", res.id)
                if self.cfg.find_file(res.id, record.get("filename")) is None:
                    return record
            elif not lost and _dangling(record, res.sha1):  # not looked up before
                w.adopted = True
                self.reg.add_location(res.id, self.archive_name)
                return None
            self._already(w, record)
            return None
        res.id = record["name"]
        return None

    def _publish(self, w: _Work) -> None:
        assert w.staged is not None and w.result.id is not None
        cfg, res = self.cfg, w.result
        target = cfg.resource_path(res.id, w.suffix)
        try:
            self._make_shard(target.parent)
        except OSError as err:
            raise ArchiveError(
                f"could not store '{res.id}' at '{target}' ({_describe(err)}); its "
                "registration was withdrawn and the source left in place"
            ) from err
        st = os.lstat(w.staged)
        if (
            (w.moved or w.linked)
            and not w.is_dir
            and (
                st.st_size,
                st.st_mtime_ns,
            )
            != w.stamp
        ):
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
            raise ArchiveError(
                f"could not store '{res.id}' at '{target}' ({_describe(err)}); its "
                "registration was withdrawn and the source left in place"
            ) from err
        res.path = target

    def _sources_stay(self) -> bool:
        """True if no source leaves its place (kept, or staged by a hard link): a
        staged name is then always a spare, and its journal need not survive a
        power failure."""
        return self.opt.keep_source or self.opt.link_source

    def _no_journal(self, todo: list[_Work]) -> bool:
        """True if a staged name needs no journal: every source stays in place and
        none is a directory, so ``check --fix`` removes an unregistered staged file
        as never the only copy, and completes a registered one."""
        return self._sources_stay() and not any(w.is_dir for w in todo)

    def _make_shard(self, shard: Path) -> None:
        if not shard.is_dir():
            shard.mkdir(mode=self.cfg.shard_mode() & 0o777, exist_ok=True)
            _set_owner_mode(shard, self.cfg.uid_gid(), self.cfg.shard_mode())

    def _withdraw(self, w: _Work) -> None:
        """Deletes a record whose file could not be published (an adopted record
        loses only the location this deposit gave it)."""
        name = w.result.id
        assert name is not None
        try:
            if w.adopted:
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

    def _finish(self, chunk: list[_Work], pool: Any) -> None:
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
                    _rmtree_writable(w.staged)
                else:
                    os.unlink(w.staged)
            src = Path(w.item.source)
            keep = self.opt.keep_source or self.opt.link_source
            if not keep and not w.moved and os.path.lexists(src):
                try:
                    _rmtree_writable(src) if w.is_dir else os.unlink(src)
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


def _refuse_repeats(works: list[_Work]) -> None:
    """A source listed twice is deposited once; the repeat fails, saying so."""
    seen: dict[str, Path] = {}
    for w in works:
        key = os.path.realpath(w.item.source)
        if key in seen:
            w.result.error = (
                f"'{w.item.source}' is listed twice (as '{seen[key]}'); it is "
                "deposited once"
            )
            w.result.exception = PolicyError(w.result.error)
        else:
            seen[key] = Path(w.item.source)


def _is_ours(
    record: Mapping[str, Any],
    sha1: str | None,
    dtype: str,
    metadata: Mapping[str, Any],
    archive: str,
) -> bool:
    """True if ``record`` is the one this deposit asked for (a write the server
    committed although its answer was lost): same content, or, with no hash, the
    same datatype, metadata and archive."""
    known = hashing.record_sha1(record)
    if sha1 is not None or known is not None:
        return sha1 is not None and known == sha1
    if record.get("dtype") != dtype or archive not in (record.get("locations") or ()):
        return False
    stored = dict(record.get("metadata") or {})
    wanted = {k: v for k, v in metadata.items() if k not in ("experimenter", "animal")}
    return stored == wanted


def _check_name_length(name: str, suffix: str) -> None:
    if len((name + suffix).encode()) > 255:
        raise PolicyError(
            f"'{name[:40]}...{suffix}' is too long for a file name in the archive "
            f"({len((name + suffix).encode())} bytes, at most 255): use a shorter id"
        )


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
        and hashing.record_sha1(record) == sha1
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


def _make_writable(path: Path) -> None:
    for d, _ds, _fs in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(d, stat.S_IMODE(os.lstat(d).st_mode) | stat.S_IRWXU)


def _rmtree_writable(path: Path) -> None:
    _make_writable(path)
    shutil.rmtree(path)


def _describe(err: BaseException) -> str:
    if isinstance(err, NbankError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        where = f" '{err.filename}'" if err.filename else ""
        return f"{err.strerror}:{where}"
    return str(err)
