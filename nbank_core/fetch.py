"""Fetching resources into a directory: a copy from an archive mounted here, else
a download served by the registry (``nbank fetch``).

>>> import tempfile, pathlib
>>> from nbank_core.api import add_datatype, deposit, init_archive
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> url = "sqlite://" + str(tmp / "r.sqlite")
>>> arch = init_archive(tmp / "lab", registry=url)
>>> _ = add_datatype("txt", "text/plain", registry=url)
>>> _ = (tmp / "note2.txt").write_text("hello")
>>> _ = deposit(arch.path, [tmp / "note2.txt"], dtype="txt")
>>> (tmp / "out").mkdir()
>>> [(n, p.name) for n, p in fetch(["note2"], tmp / "out", registry=url)]
[('note2', 'note2')]
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nbank_core import hashing
from nbank_core.api import RegistryArg, open_registry_from
from nbank_core.archive import check_filename
from nbank_core.errors import AlreadyExists, NbankError, NotFound
from nbank_core.mounts import list_mounts
from nbank_core.receive import write_file
from nbank_core.records import location_of
from nbank_core.registry import Registry

__all__ = ["fetch"]


def fetch(
    names: Iterable[str],
    dest: str | os.PathLike[str] = ".",
    *,
    force: bool = False,
    extension: str | None = None,
    registry: RegistryArg = None,
) -> Iterator[tuple[str, Path | NbankError]]:
    """Fetches each id of ``names`` into the directory ``dest`` under the file
    name the registry gives it (``extension``: with that suffix instead), checked
    against its registered hash, and yields ``(id, path written)``, or ``(id,
    error)`` for one that could not be fetched: AlreadyExists (the file exists
    and ``force`` is not set), NotFound (not registered, no location, or none
    reachable from here). Ids that are registered come first, in the order
    given; then those that are not."""
    wanted = list(dict.fromkeys(names))
    dest = Path(dest)
    mounts = list_mounts()
    with open_registry_from(registry) as reg:
        found = reg.locate_resources(wanted)
        for name in wanted:
            record = found.get(name)
            if record is not None:
                yield (
                    name,
                    _fetch_one(reg, name, record, dest, force, extension, mounts),
                )
    for name in wanted:
        if name not in found:
            yield name, NotFound(f"'{name}': no locations found")


def _fetch_one(
    reg: Registry,
    name: str,
    record: dict[str, Any],
    dest: Path,
    force: bool,
    extension: str | None,
    mounts: dict[str, Path],
) -> Path | NbankError:
    filename = record.get("filename") or name
    try:
        check_filename(name, filename)
    except NbankError as err:
        return err
    target = dest / filename
    if extension:
        target = target.with_suffix(f".{extension.lstrip('.')}")
    if target.is_dir():
        return AlreadyExists(f"target file {target} is a directory")
    if os.path.lexists(target) and not force:
        return AlreadyExists(f"target file {target} already exists")
    sha1 = hashing.record_sha1(record)
    last: NbankError = NotFound(f"'{name}': no valid locations")
    for loc in record.get("locations") or ():
        where = location_of(loc, name, mounts) if isinstance(loc, dict) else None
        try:
            if isinstance(where, Path) and where.is_file():
                return write_file(where, target, sha1=sha1, overwrite=force)
            if (
                isinstance(where, str)
                and loc.get("scheme") in ("http", "https")
                and reg.serves_downloads
            ):
                return _download(reg, name, target, sha1, force)
        except NbankError as err:
            last = err
        except OSError as err:
            last = NotFound(f"'{name}': cannot read {where}: {err.strerror}")
    return last


def _download(
    reg: Registry, name: str, target: Path, sha1: str | None, force: bool
) -> Path:
    """Downloads through the registry; without ``force`` published no-clobber."""
    if force:
        return reg.download(name, target, sha1=sha1)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        reg.download(name, tmp, sha1=sha1)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise AlreadyExists(f"target file {target} already exists") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target
