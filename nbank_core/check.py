"""``nbank check``: an fsck for an archive and its registry.

Finds files with no registry record (``unregistered``), records whose file is gone
(``missing``), content that no longer matches its registered hash
(``hash-mismatch``), leftovers of interrupted deposits in ``staging/``
(``staging-leftover``) and modes or groups that drifted from the policy
(``permissions``). With ``fix``, interrupted deposits are completed (a registered
resource whose staged file survived is published) or rolled back (a staged name
whose source still exists is removed), records of files that are gone are
withdrawn, and permissions are repaired. A file that may be a resource's only copy
is never deleted; hash mismatches and unregistered files are reported, not touched.

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
from nbank_core.registry import Registry, open_registry
from nbank_core.transaction import parse_staged_name

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

    def run(self) -> list[Finding]:
        archive = self.reg.find_archive_by_root(str(self.cfg.path))
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
            if ident not in files:
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
        files: dict[str, list[Path]] = {}
        for shard in _entries(self.cfg.resources_dir):
            if not shard.is_dir():
                self._add("unregistered", shard, None, "not a shard directory")
                continue
            for entry in _entries(shard):
                files.setdefault(entry.name.partition(".")[0], []).append(entry)
        return files

    def _add(
        self, kind: str, path: Path | None, ident: str | None, detail: str
    ) -> Finding:
        f = Finding(kind, str(path) if path else None, ident, detail)
        self.findings.append(f)
        return f

    # -- staging: interrupted deposits -------------------------------------------
    def _staging(self, records: dict[str, Any], files: dict[str, list[Path]]) -> None:
        for entry in _entries(self.cfg.staging_dir):
            ident, suffix = parse_staged_name(entry.name)
            f = self._add(
                "staging-leftover", entry, ident, "left by an interrupted deposit"
            )
            if not self.fix:
                continue
            record = records.get(ident) if ident else None
            if record is not None and ident not in files:
                self._complete(f, entry, ident, suffix, record, files)
            elif record is not None or _never_only_copy(entry):
                _remove(entry)
                f.fixed, f.action = (
                    True,
                    "removed (the source or the archived file holds it)",
                )
            else:
                f.action = (
                    "kept: it may be the only copy of its source; remove it by hand"
                )

    def _complete(
        self,
        f: Finding,
        entry: Path,
        ident: str,
        suffix: str,
        record: dict[str, Any],
        files: dict[str, list[Path]],
    ) -> None:
        sha1 = record.get("sha1")
        if sha1 and hashing.sha1_path(entry) != sha1:
            f.action = "kept: its content does not match the registered hash"
            return
        target = self.cfg.resource_path(ident, suffix)
        target.parent.mkdir(mode=self.cfg.shard_mode() & 0o777, exist_ok=True)
        if entry.is_dir():
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
            sha1 = (records.get(ident) or {}).get("sha1")
            if not sha1:
                continue
            st = os.lstat(paths[0])
            stamps[str(paths[0])] = [st.st_size, st.st_mtime_ns]
            if cache.get(str(paths[0])) != stamps[str(paths[0])]:
                todo.append((ident, paths[0]))
        digests = hashing.hash_many([p for _, p in todo])
        for ident, path in todo:
            if digests[path] != records[ident]["sha1"]:
                stamps.pop(str(path), None)
                self._add(
                    "hash-mismatch",
                    path,
                    ident,
                    f"sha1 {digests[path]}, registered {records[ident]['sha1']}",
                )
        _write_cache(cache_path, stamps)

    # -- permissions -----------------------------------------------------------------
    def _permissions(self, files: dict[str, list[Path]]) -> None:
        uid, gid = self.cfg.uid_gid()
        want_dir = self.cfg.shard_mode()
        dirs = [self.cfg.resources_dir, self.cfg.staging_dir]
        dirs += [p for p in _entries(self.cfg.resources_dir) if p.is_dir()]
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
