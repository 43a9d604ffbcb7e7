"""Tape archives: a tar file (a file, a tape device, or standard input) whose
members are resources, named ``<id>`` or ``<id>.<ext>``.

``register_tar`` records a tar file written to a tape as an archive of scheme
``tape`` (root ``TAPE:FILE_NUMBER``) holding the registered resources in it;
``import_tar`` stores them in a neurobank archive, checked against their hashes;
``check_tar`` reads them and compares their hashes. The tar is read once, as a
stream, so a tape is never rewound.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from nbank_core import hashing
from nbank_core.api import RegistryArg, open_registry_from
from nbank_core.archive import read_config
from nbank_core.copy import archive_name_of
from nbank_core.errors import NbankError
from nbank_core.export import MANIFEST
from nbank_core.ids import validate_id
from nbank_core.receive import store_stream

__all__ = ["TarItem", "check_tar", "import_tar", "register_tar"]


@dataclasses.dataclass
class TarItem:
    """One member of a tar file: ``status`` is ``added``/``present`` (register),
    ``imported``/``checked``/``present`` (import), ``ok``/``unverified`` (check),
    ``unregistered``, ``missing`` (asked for or expected, not in the tar) or
    ``failed`` (``error`` says why)."""

    member: str
    id: str | None
    status: str
    error: str | None = None


@dataclasses.dataclass
class TarReport:
    """The items of one tar file, and ``read_error`` if reading it stopped."""

    items: list[TarItem] = dataclasses.field(default_factory=list)
    read_error: str | None = None

    @property
    def failed(self) -> bool:
        bad = ("failed", "missing")
        return self.read_error is not None or any(i.status in bad for i in self.items)


def _members(tar: str | os.PathLike[str]) -> Iterator[tuple[tarfile.TarFile, Any]]:
    """Yields ``(tarfile, member)`` for each member, reading ``tar`` as a stream
    (``-``: standard input)."""
    if str(tar) == "-":
        tf = tarfile.open(fileobj=sys.stdin.buffer, mode="r|*")
    else:
        tf = tarfile.open(tar, mode="r|*")
    with tf:
        for member in tf:
            yield tf, member


def _id_of(member: Any) -> str | None:
    path = PurePosixPath(member.name)
    if path == PurePosixPath(MANIFEST) or not (member.isreg() or member.isdir()):
        return None
    try:
        return validate_id(path.name.partition(".")[0])
    except ValueError:
        return None


def _read(tar: Any, report: TarReport, each: Any) -> None:
    """Calls ``each(tarfile, member, id)`` for each candidate member, skipping
    what lies inside a directory resource; a read error ends the report."""
    inside: str | None = None
    try:
        for tf, member in _members(tar):
            if inside is not None and member.name.startswith(inside):
                continue
            ident = _id_of(member)
            if ident is None:
                continue
            if each(tf, member, ident) and member.isdir():
                inside = member.name.rstrip("/") + "/"
    except (OSError, tarfile.TarError) as err:
        report.read_error = f"cannot read {tar}: {err}"


def register_tar(
    tar: str | os.PathLike[str],
    tape_name: str,
    file_number: int,
    *,
    name: str | None = None,
    dry_run: bool = False,
    registry: RegistryArg = None,
) -> tuple[str, TarReport]:
    """Registers the tar file ``tar``, written as file ``file_number`` of the tape
    ``tape_name``, as the archive ``name`` (default ``TAPE-N``), and adds it as a
    location of every registered resource in it. Returns ``(name, report)``."""
    name = name or f"{tape_name}-{file_number}"
    report = TarReport()
    with open_registry_from(registry) as reg:
        if not dry_run:
            reg.add_archive(
                name,
                f"{tape_name}:{file_number}",
                scheme="tape",
                accessibility="offline",
            )

        def each(_tf: Any, member: Any, ident: str) -> bool:
            record = reg.get_resources([ident]).get(ident)
            if record is None:
                if member.isreg():
                    report.items.append(TarItem(member.name, ident, "unregistered"))
                return False
            if name in (record.get("locations") or ()):
                report.items.append(TarItem(member.name, ident, "present"))
            else:
                if not dry_run:
                    reg.add_location(ident, name)
                report.items.append(TarItem(member.name, ident, "added"))
            return True

        _read(tar, report, each)
    return name, report


def import_tar(
    tar: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    registry: RegistryArg = None,
) -> TarReport:
    """Stores each registered resource in ``tar`` (``names``: only those) in the
    archive at ``dest``, checked against its hash, and registers it there.
    Resources already located there are skipped. A dry run reads and checks."""
    cfg = read_config(dest)
    wanted = None if names is None else set(names)
    report = TarReport()
    with open_registry_from(registry or cfg.registry) as reg:
        dest_name = archive_name_of(reg, cfg)

        def each(tf: Any, member: Any, ident: str) -> bool:
            if wanted is not None and ident not in wanted:
                return False
            record = reg.get_resources([ident]).get(ident)
            if record is None:
                return False
            if wanted is not None:
                wanted.discard(ident)
            report.items.append(
                _import_one(reg, cfg, dest_name, tf, member, record, dry_run)
            )
            return True

        _read(tar, report, each)
    for ident in sorted(wanted or ()):
        why = "not reached, as reading stopped" if report.read_error else None
        report.items.append(TarItem("", ident, "missing", why or "not in the tar file"))
    return report


def _import_one(
    reg: Any,
    cfg: Any,
    dest_name: str,
    tf: Any,
    member: Any,
    record: dict[str, Any],
    dry_run: bool,
) -> TarItem:
    ident, sha1 = record["name"], hashing.record_sha1(record)
    if dest_name in (record.get("locations") or ()):
        return TarItem(member.name, ident, "present")
    if member.isdir():
        why = "a directory resource: extract it and use 'nbank copy'"
        return TarItem(member.name, ident, "failed", why)
    if dry_run:
        return _check_one(tf, member, record, "checked")
    try:
        data = tf.extractfile(member)
        target = store_stream(cfg, ident, Path(member.name).name, data, sha1=sha1)
    except (NbankError, OSError) as err:
        return TarItem(member.name, ident, "failed", str(err))
    try:
        reg.add_location(ident, dest_name)
    except NbankError as err:
        os.chmod(target, 0o600)
        target.unlink()
        return TarItem(member.name, ident, "failed", str(err))
    return TarItem(member.name, ident, "imported", str(target))


def check_tar(
    tar: str | os.PathLike[str],
    *,
    archive: str | None = None,
    registry: RegistryArg = None,
) -> TarReport:
    """Reads each registered resource in ``tar`` and compares it with its hash;
    with ``archive``, also reports the resources registered there that the tar
    does not hold (``missing``)."""
    report = TarReport()
    with open_registry_from(registry) as reg:
        expected: set[str] = set()
        if archive is not None:
            reg.get_archive(archive)
            expected = {r["name"] for r in reg.search(archive=archive)}
        seen: set[str] = set()

        def each(tf: Any, member: Any, ident: str) -> bool:
            record = reg.get_resources([ident]).get(ident)
            if record is None:
                if member.isreg():
                    report.items.append(TarItem(member.name, ident, "unregistered"))
                return False
            seen.add(ident)
            report.items.append(_check_one(tf, member, record))
            return True

        _read(tar, report, each)
    if not report.read_error:
        for ident in sorted(expected - seen):
            report.items.append(
                TarItem("", ident, "missing", f"registered to {archive}")
            )
    return report


def _check_one(tf: Any, member: Any, record: dict[str, Any], ok: str = "ok") -> TarItem:
    ident, sha1 = record["name"], hashing.record_sha1(record)
    if member.isdir():
        return TarItem(member.name, ident, "unverified", "a directory: not hashed")
    data = tf.extractfile(member)
    got = hashing._hash_stream(data)
    if sha1 is None:
        return TarItem(member.name, ident, "unverified", "no registered hash")
    if got != sha1:
        return TarItem(
            member.name, ident, "failed", f"sha1 {got} does not match {sha1}"
        )
    return TarItem(member.name, ident, ok)
