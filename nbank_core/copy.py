"""Copies between archives: find the readable copy of each resource on this host,
copy resources into another archive and register them there (``nbank copy``), and
remove the copies an archive need not keep (``nbank archive prune``).

Every copy is hash-checked as it is written and published with a no-clobber
link (see :mod:`nbank_core.receive`); its location is registered only once the
file is in place. Pruning takes the file out of the archive before the registry
forgets the location, and puts it back if the registry refuses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nbank_core import hashing
from nbank_core.api import RegistryArg, open_registry_from
from nbank_core.archive import ArchiveConfig, read_config
from nbank_core.errors import ConfigError, NbankError, NotFound
from nbank_core.fsutil import fsync_dir
from nbank_core.mounts import list_mounts, registered_archive
from nbank_core.receive import copy_into_archive
from nbank_core.records import location_of
from nbank_core.registry import Registry

__all__ = ["Source", "copy_resources", "find_sources", "prune", "archive_name_of"]


@dataclasses.dataclass(frozen=True)
class Source:
    """A resource to read: its stored file here (``path``), registered ``sha1``
    and record, or ``error`` saying why there is none."""

    id: str
    path: Path | None = None
    sha1: str | None = None
    record: dict[str, Any] | None = None
    error: str | None = None


def find_sources(
    reg: Registry, names: Iterable[str], *, archive: str | None = None
) -> list[Source]:
    """The readable copy on this host of each distinct id (``archive``: only a
    copy in that archive), in order. Hashes are not checked here."""
    wanted = list(dict.fromkeys(names))
    found = reg.locate_resources(wanted)
    records = reg.get_resources([n for n in wanted if n in found])
    mounts = list_mounts()
    out = []
    for name in wanted:
        rec = found.get(name)
        if rec is None:
            why = f"not in archive '{archive}'" if archive else "not in the registry"
            out.append(Source(name, error=f"{why}, or has no locations"))
            continue
        locations = [
            loc
            for loc in rec.get("locations") or ()
            if isinstance(loc, dict)
            and (archive is None or loc.get("archive_name") == archive)
        ]
        if archive is not None and not locations:
            out.append(Source(name, error=f"not in archive '{archive}'"))
            continue
        path = next(
            (
                p
                for p in (location_of(loc, name, mounts) for loc in locations)
                if isinstance(p, Path)
            ),
            None,
        )
        if path is None:
            out.append(Source(name, error="no copy on this host"))
        elif not os.access(path, os.R_OK):
            out.append(Source(name, error=f"cannot read '{path}'"))
        else:
            sha1 = hashing.record_sha1(records.get(name))
            out.append(Source(name, path, sha1, records.get(name)))
    return out


def archive_name_of(reg: Registry, cfg: ArchiveConfig) -> str:
    """The name the registry knows the archive ``cfg`` by; ConfigError if none."""
    record = registered_archive(reg, cfg)
    if record is None:
        raise ConfigError(
            f"no archive is registered at '{cfg.path}' in {reg.url}: register it "
            f"with 'nbank init --register {cfg.path}'"
        )
    return record["name"]


@dataclasses.dataclass
class Copied:
    """What happened to one resource: ``status`` is ``copied``, ``checked`` (a
    dry run), ``present`` (already located in the destination) or ``failed``."""

    id: str
    status: str
    path: Path | None = None
    error: str | None = None


def copy_resources(
    names: Iterable[str],
    dest: str | os.PathLike[str],
    *,
    source_archive: str | None = None,
    dry_run: bool = False,
    registry: RegistryArg = None,
) -> list[Copied]:
    """Copies each resource of ``names`` from an archive on this host
    (``source_archive``: only from that one) into the archive at ``dest`` and
    registers it there. A dry run reads and checks, and changes nothing."""
    cfg = read_config(dest)
    with open_registry_from(registry or cfg.registry) as reg:
        dest_name = archive_name_of(reg, cfg)
        if source_archive == dest_name:
            raise ConfigError("the source and destination archives are the same")
        wanted = list(dict.fromkeys(names))
        records = reg.get_resources(wanted)
        out: list[Copied] = []
        todo = []
        for name in wanted:
            if dest_name in ((records.get(name) or {}).get("locations") or ()):
                out.append(Copied(name, "present"))
            else:
                todo.append(name)
        for src in find_sources(reg, todo, archive=source_archive):
            out.append(_copy_one(reg, cfg, dest_name, src, dry_run))
    return out


def _copy_one(
    reg: Registry, cfg: ArchiveConfig, dest_name: str, src: Source, dry_run: bool
) -> Copied:
    if src.path is None:
        return Copied(src.id, "failed", error=src.error)
    try:
        if dry_run:
            got = hashing.sha1_path(src.path)
            if src.sha1 is not None and got != src.sha1:
                return Copied(
                    src.id, "failed", error=f"content differs from sha1 {src.sha1}"
                )
            return Copied(src.id, "checked", src.path)
        target = copy_into_archive(cfg, src.id, src.path, sha1=src.sha1)
        try:
            reg.add_location(src.id, dest_name)
        except BaseException:
            _remove_copy(target)
            raise
        return Copied(src.id, "copied", target)
    except (NbankError, OSError) as err:
        return Copied(src.id, "failed", error=str(err))


def _remove_copy(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        for d, dirs, _ in os.walk(path):
            for n in dirs:
                os.chmod(Path(d) / n, 0o700)
        os.chmod(path, 0o700)
        shutil.rmtree(path)
    else:
        path.unlink()
    fsync_dir(path.parent)


@dataclasses.dataclass
class Pruned:
    """``status``: ``removed``, ``kept`` (not there, or the only copy: ``error``
    says which) or ``failed``."""

    id: str
    status: str
    path: Path | None = None
    error: str | None = None


def prune(
    archive: str,
    names: Iterable[str],
    *,
    dry_run: bool = False,
    registry: RegistryArg = None,
) -> list[Pruned]:
    """Removes from the archive named ``archive`` (mounted here) each resource of
    ``names`` that has a location in another archive too: the file first (moved
    into ``staging/``), then its location; if the registry refuses, the file goes
    back. A dry run changes nothing."""
    out: list[Pruned] = []
    with open_registry_from(registry) as reg:
        record = reg.get_archive(archive)
        if record.get("scheme") != "neurobank":
            raise ConfigError(f"'{archive}' is not a neurobank archive")
        cfg = next(
            (c for c in (_config(r) for r in _roots(record)) if c is not None), None
        )
        if cfg is None:
            raise NotFound(
                f"the archive '{archive}' is not on this host ({record.get('root')})"
            )
        for name in dict.fromkeys(names):
            try:
                out.append(_prune_one(reg, cfg, archive, name, dry_run))
            except (NbankError, OSError) as err:
                out.append(Pruned(name, "failed", error=str(err)))
    return out


def _roots(record: dict[str, Any]) -> list[str]:
    from nbank_core.mounts import local_root

    return local_root(record)


def _config(root: str) -> ArchiveConfig | None:
    try:
        return read_config(root)
    except (NbankError, OSError):
        return None


def _prune_one(
    reg: Registry, cfg: ArchiveConfig, archive: str, name: str, dry_run: bool
) -> Pruned:
    try:
        locations = {loc.get("archive_name") for loc in reg.list_locations(name)}
    except NotFound:
        return Pruned(name, "failed", error="not in registry")
    locations.discard("registry")  # the server's download pseudo-location
    if archive not in locations:
        return Pruned(name, "kept", error="not in this archive")
    if len(locations) < 2:
        return Pruned(name, "kept", error="this archive is the only location")
    path = cfg.find_file(name)
    if path is None:
        return Pruned(name, "failed", error="not actually present in the archive")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return Pruned(name, "failed", path, "insufficient permissions to delete")
    if dry_run:
        return Pruned(name, "removed", path)
    cfg.staging_dir.mkdir(exist_ok=True)
    hold = Path(tempfile.mkdtemp(prefix=f".prune-{name}.", dir=cfg.staging_dir))
    held = hold / path.name
    os.rename(path, held)
    try:
        reg.remove_location(name, archive)
    except BaseException:
        os.rename(held, path)
        with contextlib.suppress(OSError):
            hold.rmdir()
        raise
    fsync_dir(path.parent)
    _remove_copy(held)
    hold.rmdir()
    return Pruned(name, "removed", path)
