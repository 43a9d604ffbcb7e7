"""One batch of a deposit: the registry's side of the transaction, and what
stops a batch. Each item is prepared (policy, id, hash, names already taken),
staged and registered, then published (:mod:`nbank_core.deposit_files`); each
step pushes its undo on an ``ExitStack``. An authentication failure, a few
registry failures in a row or a stop request skip the items not yet begun.

>>> item_name(DepositItem(Path("/data/st32_1.wav")))
'st32_1'
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbank_core import hashing, ids
from nbank_core.archive import CONFIG_NAME, ArchiveConfig
from nbank_core.deposit_files import FileSteps, describe_error, rmtree_writable
from nbank_core.deposit_types import (
    DepositItem,
    DepositOptions,
    DepositResult,
    Stop,
    Work,
    check_name_length,
    dangling,
    is_ours,
    item_name,
    refuse_repeats,
    valid,
)
from nbank_core.errors import (
    AlreadyExists,
    ArchiveError,
    AuthError,
    NbankError,
    NotFound,
    PolicyError,
    RegistryUnavailable,
)
from nbank_core.fsutil import fsync_dir
from nbank_core.journal import Journal
from nbank_core.mounts import registered_archive
from nbank_core.registry import Registry

__all__ = ["Batch"]

log = logging.getLogger("nbank_core.transaction")

_CHUNK = 1024  # files made durable and removed from their source per round
PUBLISH_WAIT = 10.0  # seconds to wait for a concurrent deposit of the same content
FAILURES_IN_A_ROW = 3  # registry failures in a row that stop a batch


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


class Batch(FileSteps):
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
        self._staging_real = Path(os.path.realpath(cfg.staging_dir))

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
        works = [Work(i, DepositResult(Path(i.source))) for i in items]
        refuse_repeats(works)
        if not self.auto_id:
            todo = [w for w in works if w.result.error is None]
            lazy = self.reg.url.startswith("http") or self.opt.link_source
            if lazy and not self.opt.dry_run:
                # a server's POST says itself that a name is taken (_register then
                # reads that one record), and staging a link costs nothing: look up
                # only the sources that are gone, archived by an interrupted run
                todo = [w for w in todo if not os.path.lexists(w.item.source)]
            named = {item_name(w.item) for w in todo}
            asked = [n for n in named if n and valid(n)]
            self.taken = self.reg.get_resources(asked) if asked else {}
        jobs = jobs or (8 if self.reg.url.startswith("http") else 4)
        if self.opt.atomic:
            return self._all_or_nothing(works, jobs)
        return self.run_chunks(works, jobs)

    def run_chunks(self, works: list[Work], jobs: int) -> list[DepositResult]:
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

    def _all_or_nothing(self, works: list[Work], jobs: int) -> list[DepositResult]:
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

    def _roll_back(self, w: Work, why: str | None) -> None:
        res = w.result
        assert res.id is not None and res.path is not None
        try:
            self.reg.delete_resource(res.id)
            if res.path.is_dir() and not res.path.is_symlink():
                rmtree_writable(res.path)
            else:
                os.unlink(res.path)
            fsync_dir(res.path.parent)
        except (NbankError, OSError) as err:
            res.error = (
                f"archived, but could not be withdrawn after another item failed "
                f"({describe_error(err)}); run 'nbank check --fix {self.cfg.path}'"
            )
            return
        res.status, res.path = "failed", None
        res.error = (
            f"withdrawn: deposited all or nothing, and another item failed ({why})"
        )

    def _prepare_safe(self, w: Work, journal: Journal) -> None:
        try:
            self._check_stop()
            self._prepare(w)
            if not self.opt.dry_run and w.result.status == "failed":
                self._plan_stage(w, journal)
        except Stop as stop:
            self._skip(w, str(stop))
        except (NbankError, OSError) as err:
            self._fail(w, err)

    def _one(self, w: Work) -> None:
        if w.result.status != "failed" or w.result.error is not None:
            return  # exists, dry-run, skipped, or failed in preparation
        try:
            self._check_stop()
        except Stop as stop:
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
            raise Stop(self.stop_reason or "not attempted: the deposit was stopped")

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

    def _skip(self, w: Work, reason: str) -> None:
        w.result.status, w.result.error = "skipped", reason

    def _fail(self, w: Work, err: BaseException) -> None:
        w.result.status = "failed"
        w.result.error = describe_error(err)
        w.result.exception = err
        log.debug("%s: %s", w.item.source, w.result.error)

    # -- the steps ---------------------------------------------------------------
    def _prepare(self, w: Work) -> None:
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
            res.id = ids.validate_id(item_name(w.item))
        if res.id is not None:
            check_name_length(res.id, w.suffix if self.cfg.keep_extensions else "")
        if self.hash or w.is_dir:
            res.sha1 = hashing.sha1_path(src)
        if res.id is None:  # the registry names it when it is registered
            if self.opt.dry_run:
                res.status = "dry-run"
            return
        target = self.cfg.resource_path(res.id, w.suffix)
        record = self.taken.get(res.id)
        w.adopted = record is not None and dangling(record, res.sha1)
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

    def _archived_already(self, w: Work) -> bool:
        """For a source that is gone: True (status ``exists``) if its id is
        registered and archived here, as after an interrupted run of the same
        deposit whose item was archived before the interruption."""
        if self.auto_id or w.item.name is not None:
            return False
        name = item_name(w.item)
        if not valid(name):
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
        if real.parent == self._staging_real:
            return
        for parent in real.parents:
            if _is_archive_dir(parent):
                raise PolicyError(
                    f"'{src}' is inside the archive '{parent}'; files in an archive "
                    "are never deposited (copy it out first)"
                )

    def _already(self, w: Work, record: Mapping[str, Any]) -> None:
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

    def _register(self, w: Work) -> Mapping[str, Any] | None:
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
            if lost and is_ours(
                record, res.sha1, self.opt.dtype, meta, self.archive_name
            ):
                log.info("'%s' was registered although the answer was lost", res.id)
                if self.cfg.find_file(res.id, record.get("filename")) is None:
                    return record
            elif not lost and dangling(record, res.sha1):  # not looked up before
                w.adopted = True
                self.reg.add_location(res.id, self.archive_name)
                return None
            self._already(w, record)
            return None
        res.id = record["name"]
        return None

    def _sources_stay(self) -> bool:
        """True if no source leaves its place (kept, or staged by a hard link): a
        staged name is then always a spare, and its journal need not survive a
        power failure."""
        return self.opt.keep_source or self.opt.link_source

    def _no_journal(self, todo: list[Work]) -> bool:
        """True if a staged name needs no journal: every source stays in place and
        none is a directory, so ``check --fix`` removes an unregistered staged file
        as never the only copy, and completes a registered one."""
        return self._sources_stay() and not any(w.is_dir for w in todo)

    def _withdraw(self, w: Work) -> None:
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


#: directories known to be (or not to be) an archive's root, with when that was
#: seen: every source's parents are checked, and engines deposit one file a job
_archive_dirs: dict[Path, tuple[float, bool]] = {}
_ARCHIVE_DIRS_TTL = 10.0


def _is_archive_dir(path: Path) -> bool:
    """True if ``path`` holds an archive (``nbank.json`` and ``resources/``);
    answers are kept a few seconds."""
    now = time.monotonic()
    seen = _archive_dirs.get(path)
    if seen is not None and now - seen[0] < _ARCHIVE_DIRS_TTL:
        return seen[1]
    inside = (path / CONFIG_NAME).is_file() and (path / "resources").is_dir()
    if len(_archive_dirs) > 4096:
        _archive_dirs.clear()
    _archive_dirs[path] = (now, inside)
    return inside
