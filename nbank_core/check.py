"""``nbank check``: an fsck for an archive and its registry.

Finds files with no registry record (``unregistered``), records whose file is gone
(``missing``), content that no longer matches its registered hash
(``hash-mismatch``), leftovers of interrupted deposits in ``staging/``
(``staging-leftover``), modes or groups that drifted from the policy
(``permissions``) and entries that are neither regular files nor directories
(``not-a-file``: symbolic links, FIFOs, devices, sockets), which are reported and
never opened, followed or hashed. With ``fix``, interrupted deposits are completed
(a registered resource whose staged file survived is published) or rolled back (a
staged name whose source still exists is removed), records of files that are gone
are withdrawn, and permissions are repaired. A file that may be a resource's only
copy is never deleted; hash mismatches and unregistered files are reported, not
touched.

>>> import tempfile, pathlib
>>> from nbank_core import init_archive
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> arch = init_archive(tmp / "a", registry="sqlite://" + str(tmp / "r.sqlite"))
>>> check_archive(arch.path)
[]
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nbank_core import hashing
from nbank_core.archive import ArchiveConfig, read_config
from nbank_core.errors import NbankError, NotFound
from nbank_core.fsutil import fsync_dir
from nbank_core.journal import (
    JOURNAL_DIR,
    parse_staged_name,
    prune_journals,
    prune_leftovers,
    read_journals,
    writer_alive,
)
from nbank_core.mounts import registered_archive
from nbank_core.registry import Registry, open_registry

__all__ = ["Finding", "check_archive"]

FAST_CACHE = ".nbank-check.json"


@dataclasses.dataclass
class Finding:
    """One thing wrong. ``action`` says what ``fix`` did; ``fixed`` whether that
    resolved it."""

    kind: str
    path: str | None
    id: str | None
    detail: str
    fixed: bool = False
    action: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_archive(
    archive: str | os.PathLike[str] | ArchiveConfig,
    *,
    registry: Registry | None = None,
    auth: tuple[str, str] | None = None,
    fix: bool = False,
    fast: bool = False,
) -> list[Finding]:
    """Checks ``archive`` against its registry; returns the findings (empty: all
    well). ``fast`` hashes only files whose size or mtime changed since the last
    full check (recorded in ``.nbank-check.json`` in the archive)."""
    cfg = archive if isinstance(archive, ArchiveConfig) else read_config(archive)
    own = registry is None
    reg = registry if registry is not None else open_registry(cfg.registry, auth=auth)
    try:
        return _Checker(cfg, reg, fix, fast).run()
    finally:
        if own:
            reg.close()


class _Checker:
    def __init__(self, cfg: ArchiveConfig, reg: Registry, fix: bool, fast: bool):
        self.cfg, self.reg, self.fix, self.fast = cfg, reg, fix, fast
        self.findings: list[Finding] = []
        self.special: set[str] = set()  # ids whose entry is not a file: not missing

    def run(self) -> list[Finding]:
        archive = registered_archive(self.reg, self.cfg)
        if archive is None:
            raise NotFound(
                f"the archive at '{self.cfg.path}' is not registered in {self.reg.url}"
            )
        self.name = archive["name"]
        records = {r["name"]: r for r in self.reg.search(archive=self.name)}
        files = self._files()
        self._staging(records, files)
        self._hashes(records, files)
        for ident, record in records.items():
            if ident not in files and ident not in self.special:
                self._missing(ident, record)
        for ident, paths in files.items():
            if ident not in records:
                for p in paths:
                    self._add(
                        "unregistered", p, ident, "no registry record in this archive"
                    )
            elif len(paths) > 1:
                for p in paths[1:]:
                    self._add("duplicate", p, ident, f"a second file for '{ident}'")
        self._permissions(files)
        return self.findings

    # -- inventory -------------------------------------------------------------
    def _files(self) -> dict[str, list[Path]]:
        """The regular files and directories in the shards, by id. Anything else
        (checked with ``lstat``, never opened) is a ``not-a-file`` finding."""
        files: dict[str, list[Path]] = {}
        for shard in _entries(self.cfg.resources_dir):
            kind = _special(shard)
            if kind is not None:
                self._not_a_file(shard, None, kind)
                continue
            if not stat.S_ISDIR(os.lstat(shard).st_mode):
                self._add("unregistered", shard, None, "not a shard directory")
                continue
            for entry in _entries(shard):
                ident = entry.name.partition(".")[0]
                kind = _special(entry)
                if kind is not None:
                    self._not_a_file(entry, ident, kind)
                    self.special.add(ident)
                    continue
                files.setdefault(ident, []).append(entry)
        return files

    def _not_a_file(self, path: Path, ident: str | None, kind: str) -> None:
        self._add(
            "not-a-file",
            path,
            ident,
            f"{kind}, not a regular file or directory; not opened or followed: "
            "replace it with the resource's file or remove it",
        )

    def _add(
        self, kind: str, path: Path | None, ident: str | None, detail: str
    ) -> Finding:
        f = Finding(kind, str(path) if path else None, ident, detail)
        self.findings.append(f)
        return f

    # -- staging: interrupted deposits -------------------------------------------
    def _staging(self, records: dict[str, Any], files: dict[str, list[Path]]) -> None:
        """Interrupted deposits: each staged entry is completed (registered, not
        yet published), removed (archived already, or a copy whose source is
        still in place), or put back where its journal says it came from."""
        journal, journal_files = read_journals(self.cfg.staging_dir)
        live: set[str] = set()
        for entry in _entries(self.cfg.staging_dir):
            if entry.name == JOURNAL_DIR:
                continue
            noted = journal.get(entry.name, {})
            ident, suffix = parse_staged_name(entry.name)
            ident = ident or noted.get("id")
            if noted and writer_alive(noted):
                live.add(entry.name)
                continue  # a deposit or an engine on this host is at work on it
            f = self._add(
                "staging-leftover", entry, ident, "left by an interrupted deposit"
            )
            if not self.fix:
                live.add(entry.name)
                continue
            record = records.get(ident) if ident else None
            source = noted.get("source")
            if record is not None and ident not in files:
                self._complete(f, entry, ident, suffix, record, files)
            elif record is not None:
                _remove(entry)
                f.fixed, f.action = True, "removed (the archived file holds it)"
            elif noted.get("how") == "moved" and source:
                self._put_back(f, entry, Path(source))
            elif noted.get("how") in ("copied", "output") or _never_only_copy(entry):
                _remove(entry)
                f.fixed, f.action = True, "removed (its source holds it, or no one)"
            else:
                f.action = (
                    "kept: it may be the only copy of its source; remove it by hand"
                )
            if not f.fixed:
                live.add(entry.name)
        if self.fix:
            prune_journals(journal_files, live)
            if not any(writer_alive(e) for e in journal.values()):
                prune_leftovers(self.cfg.staging_dir)

    def _put_back(self, f: Finding, entry: Path, source: Path) -> None:
        """Moves a staged source back to where the deposit took it from."""
        if os.path.lexists(source):
            f.action = (
                f"kept: it came from '{source}', where another file now is; move it "
                "by hand"
            )
            return
        try:
            source.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry, source)
        except OSError as err:
            f.action = f"kept: it came from '{source}' but cannot go back ({err})"
            return
        fsync_dir(source.parent)
        fsync_dir(entry.parent)
        f.fixed, f.action = True, f"put back at '{source}' (not deposited)"

    def _complete(
        self,
        f: Finding,
        entry: Path,
        ident: str,
        suffix: str,
        record: dict[str, Any],
        files: dict[str, list[Path]],
    ) -> None:
        kind = _special(entry)
        if kind is not None:
            f.action = f"kept: {kind}, not a file; remove it by hand"
            return
        sha1 = hashing.record_sha1(record)
        if sha1 and hashing.sha1_path(entry) != sha1:
            f.action = "kept: its content does not match the registered hash"
            return
        target = self.cfg.resource_path(ident, suffix)
        target.parent.mkdir(mode=self.cfg.shard_mode() & 0o777, exist_ok=True)
        if stat.S_ISDIR(os.lstat(entry).st_mode):
            os.rename(entry, target)
        else:
            os.link(entry, target, follow_symlinks=False)
            os.unlink(entry)
        fsync_dir(target.parent)
        files[ident] = [target]
        f.fixed, f.action = True, f"completed the deposit: published as {target}"

    # -- records and content -----------------------------------------------------
    def _missing(self, ident: str, record: dict[str, Any]) -> None:
        f = self._add(
            "missing", None, ident, f"registered in '{self.name}' but no file"
        )
        if not self.fix:
            return
        try:
            self.reg.remove_location(ident, self.name)
            if not self.reg.list_locations(ident):
                self.reg.delete_resource(ident)
                f.action = "withdrew the record (no other location)"
            else:
                f.action = f"removed the location '{self.name}'"
            f.fixed = True
        except NbankError as err:
            f.action = f"could not withdraw: {err}"

    def _hashes(self, records: dict[str, Any], files: dict[str, list[Path]]) -> None:
        cache_path = self.cfg.path / FAST_CACHE
        cache = _read_cache(cache_path) if self.fast else {}
        todo: list[tuple[str, Path]] = []
        stamps: dict[str, list[int]] = {}
        for ident, paths in files.items():
            sha1 = hashing.record_sha1(records.get(ident))
            if not sha1:
                continue
            st = os.lstat(paths[0])
            stamps[str(paths[0])] = [st.st_size, st.st_mtime_ns]
            if cache.get(str(paths[0])) != stamps[str(paths[0])]:
                todo.append((ident, paths[0]))
        digests = hashing.hash_many([p for _, p in todo])
        for ident, path in todo:
            known = hashing.record_sha1(records[ident])
            if digests[path] != known:
                stamps.pop(str(path), None)
                self._add(
                    "hash-mismatch",
                    path,
                    ident,
                    f"sha1 {digests[path]}, registered {known}",
                )
        _write_cache(cache_path, stamps)

    # -- permissions -----------------------------------------------------------------
    def _permissions(self, files: dict[str, list[Path]]) -> None:
        uid, gid = self.cfg.uid_gid()
        want_dir = self.cfg.shard_mode()
        dirs = [self.cfg.resources_dir, self.cfg.staging_dir]
        dirs += [
            p
            for p in _entries(self.cfg.resources_dir)
            if stat.S_ISDIR(os.lstat(p).st_mode)
        ]
        for d in dirs:
            st = os.lstat(d)
            if stat.S_IMODE(st.st_mode) != want_dir or (gid != -1 and st.st_gid != gid):
                self._drift(d, None, want_dir, gid, -1)
        for ident, paths in files.items():
            for path in paths:
                for p in _walk(path):
                    st = os.lstat(p)
                    if stat.S_ISLNK(st.st_mode):
                        continue
                    want = self.cfg.resource_mode(stat.S_ISDIR(st.st_mode), st.st_mode)
                    owner_ok = (gid == -1 or st.st_gid == gid) and (
                        uid == -1 or st.st_uid == uid
                    )
                    if stat.S_IMODE(st.st_mode) != want or not owner_ok:
                        self._drift(p, ident, want, gid, uid)

    def _drift(
        self, path: Path, ident: str | None, mode: int, gid: int, uid: int
    ) -> None:
        st = os.lstat(path)
        f = self._add(
            "permissions",
            path,
            ident,
            f"mode {stat.S_IMODE(st.st_mode):o} group {st.st_gid}, "
            f"policy wants mode {mode:o} group {gid}",
        )
        if self.fix:
            if uid != -1 or gid != -1:
                os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, mode, follow_symlinks=False)
            f.fixed, f.action = True, "repaired"


def _entries(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as it:
            return sorted(Path(e.path) for e in it)
    except FileNotFoundError:
        return []


def _special(path: Path) -> str | None:
    """None for a regular file or a directory (by ``lstat``: a link is not
    followed); else what it is, for a message."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "gone while checking"
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return f"a symbolic link to '{os.readlink(path)}'"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return f"a special file (mode {mode:o})"


def _walk(path: Path) -> Iterator[Path]:
    yield path
    if path.is_dir() and not path.is_symlink():
        for d, ds, fs in os.walk(path):
            for n in (*ds, *fs):
                yield Path(d) / n


def _never_only_copy(path: Path) -> bool:
    """True for a staged file (a hard link to its source, or a copy, complete or
    cut short): a deposit removes a source only after publishing its file, which
    it registers first, so an unregistered staged file is never a source's only
    copy and removing it loses nothing. A directory may have been renamed into
    staging from its source, so it is kept."""
    return not stat.S_ISDIR(os.lstat(path).st_mode)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink()
    fsync_dir(path.parent)


def _read_cache(path: Path) -> dict[str, list[int]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, stamps: dict[str, list[int]]) -> None:
    from nbank_core.fsutil import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(stamps), overwrite=True)
    except OSError:
        pass  # a read-only archive can still be checked, just not fast next time
