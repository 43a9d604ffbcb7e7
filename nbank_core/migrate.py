"""Growing from the embedded registry to a server: copy one registry into another.

:func:`copy_registry` copies datatypes, archives and resources (names, sha1,
datatype, metadata, experimenter and animal where the destination accepts them,
and locations with their keys) from ``src`` to ``dest``, either way between an
embedded registry and a django-neurobank server. It never changes what ``dest``
already holds: a record there with other content is reported as a conflict and
left alone, so running it twice copies nothing the second time. What no client
can set (``created_by``, ``created_on``) is the destination's own.

``relink=True`` then rewrites the ``nbank.json`` of every copied archive mounted
on this host (at its root, or where :mod:`nbank_core.mounts` says) to name
``dest``, atomically, keeping the file's mode and group: the archives' deposits go
to the new registry from then on.

>>> from nbank_core.registry import open_registry
>>> a, b = open_registry("sqlite:///:memory:"), open_registry("sqlite:///:memory:")
>>> _ = a.add_datatype("txt", "text/plain"); _ = a.add_archive("lab", "/no/lab")
>>> _ = a.add_resource("st32_1", "txt", "lab", metadata={"site": 3})
>>> copy_registry(a, b).summary()
'1 datatype(s), 1 archive(s), 1 resource(s) and 0 extra location(s) copied'
>>> copy_registry(a, b).summary()
'nothing to copy: every record is already in the destination'
>>> b.get_resource("st32_1")["metadata"]
{'site': 3}
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbank_core.errors import (
    AlreadyExists,
    ConfigError,
    NbankError,
    NotFound,
    RegistryRejected,
)
from nbank_core.registry import BULK_BATCH, Registry, same_registry

__all__ = ["CopyReport", "copy_registry"]

_CORE = ("experimenter", "animal")


@dataclasses.dataclass
class CopyReport:
    """What :func:`copy_registry` did: counts of records added, ``conflicts``
    (records of ``dest`` that differ from ``src``'s, left alone), ``notes``
    (what was copied only in part) and ``relinked`` archive directories."""

    src: str
    dest: str
    datatypes: int = 0
    archives: int = 0
    resources: int = 0
    locations: int = 0
    unchanged: int = 0
    conflicts: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    relinked: list[Path] = dataclasses.field(default_factory=list)

    @property
    def copied(self) -> int:
        return self.datatypes + self.archives + self.resources + self.locations

    def summary(self) -> str:
        if not self.copied:
            text = "nothing to copy: every record is already in the destination"
        else:
            text = (
                f"{self.datatypes} datatype(s), {self.archives} archive(s), "
                f"{self.resources} resource(s) and {self.locations} extra "
                "location(s) copied"
            )
        if self.conflicts:
            text += f"; {len(self.conflicts)} conflict(s) left alone"
        return text


def copy_registry(
    src: Registry | str,
    dest: Registry | str,
    *,
    relink: bool = False,
    auth: str | tuple[str, str] | None = None,
) -> CopyReport:
    """Copies every datatype, archive and resource of ``src`` into ``dest`` (open
    registries or URLs; ``auth`` is for a ``dest`` server given by URL; an
    embedded ``dest`` is created if missing) and returns a :class:`CopyReport`.
    Idempotent; never overwrites a record of ``dest``. ``relink``: rewrite the
    ``nbank.json`` of the copied archives mounted here to name ``dest``.
    """
    from nbank_core.api import open_registry_from

    with (
        open_registry_from(src) as s,
        open_registry_from(dest, auth, create=True) as d,
    ):
        if s is d or (same_registry(s.url, d.url) and ":memory:" not in s.url):
            raise ConfigError(
                f"the source and destination are the same registry ({s.url}): "
                "name another destination"
            )
        report = CopyReport(s.url, d.url)
        _datatypes(s, d, report)
        archives = _archives(s, d, report)
        _resources(s, d, archives, report)
        if relink:
            _relink(s, d, archives, report)
    return report


def _datatypes(s: Registry, d: Registry, report: CopyReport) -> None:
    have = {t["name"]: t for t in d.list_datatypes()}
    for t in s.list_datatypes():
        other = have.get(t["name"])
        if other is None:
            d.add_datatype(t["name"], t["content_type"], t.get("extension") or None)
            report.datatypes += 1
        elif (other.get("content_type"), other.get("extension") or "") != (
            t.get("content_type"),
            t.get("extension") or "",
        ):
            report.notes.append(
                f"datatype '{t['name']}' differs in {d.url} "
                f"({other.get('content_type')}, .{other.get('extension') or ''}; "
                f"here {t.get('content_type')}, .{t.get('extension') or ''}): kept "
                "the destination's"
            )


def _archives(s: Registry, d: Registry, report: CopyReport) -> dict[str, dict]:
    """Copies archives; returns the source's archives that ``dest`` holds alike
    (same name, scheme and root), by name: only they receive locations."""
    same: dict[str, dict] = {}
    for a in s.list_archives():
        try:
            other = d.get_archive(a["name"])
        except NotFound:
            try:
                d.add_archive(
                    a["name"],
                    a["root"],
                    scheme=a["scheme"],
                    accessibility=a.get("accessibility") or "local",
                )
            except (AlreadyExists, RegistryRejected) as err:
                report.conflicts.append(
                    f"archive '{a['name']}' ({a['root']}) not copied: {err}; its "
                    "locations are not copied either"
                )
                continue
            report.archives += 1
            same[a["name"]] = a
            continue
        if (other["scheme"], other["root"]) != (a["scheme"], a["root"]):
            report.conflicts.append(
                f"archive '{a['name']}' is {other['scheme']}:{other['root']} in "
                f"{d.url} but {a['scheme']}:{a['root']} in {s.url}: left alone, and "
                "no location in it is copied"
            )
            continue
        same[a["name"]] = a
    return same


def _resources(
    s: Registry, d: Registry, archives: Mapping[str, dict], report: CopyReport
) -> None:
    batch: list[dict[str, Any]] = []
    for record in s.search():
        batch.append(record)
        if len(batch) >= BULK_BATCH:
            _resource_batch(s, d, batch, archives, report)
            batch = []
    if batch:
        _resource_batch(s, d, batch, archives, report)


def _plain_metadata(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metadata of a record without the copies of the core fields."""
    meta = record.get("metadata")
    if meta is None:
        return None
    return {k: v for k, v in meta.items() if k not in _CORE}


def _resource_batch(
    s: Registry,
    d: Registry,
    batch: list[dict[str, Any]],
    archives: Mapping[str, dict],
    report: CopyReport,
) -> None:
    names = [r["name"] for r in batch]
    there = d.get_resources(names)
    located = s.locate_resources(names)
    for record in batch:
        name = record["name"]
        locs = [
            loc
            for loc in (located.get(name) or {}).get("locations", [])
            if loc.get("archive_name") in archives
        ]
        other = there.get(name)
        if other is None:
            if not locs:
                report.notes.append(
                    f"resource '{name}' not copied: it has no location in an "
                    "archive that was copied"
                )
                continue
            try:
                _add(d, record, locs, report)
            except (AlreadyExists, RegistryRejected) as err:
                report.conflicts.append(f"resource '{name}' not copied: {err}")
                continue
            report.resources += 1
            have: set[str] = {locs[0]["archive_name"]}
        else:
            if not _same(record, other, report):
                continue
            have = set(other.get("locations") or ())
        for loc in locs:
            if loc["archive_name"] in have:
                continue
            try:
                d.add_location(name, loc["archive_name"], loc.get("key"))
            except AlreadyExists as err:
                report.conflicts.append(
                    f"location of '{name}' in '{loc['archive_name']}' not copied: {err}"
                )
                continue
            report.locations += 1


def _add(
    d: Registry, record: Mapping[str, Any], locs: list[dict], report: CopyReport
) -> None:
    """Registers ``record`` in ``d``, in its first archive with no key (keys go
    with :meth:`Registry.add_location`); experimenter and animal are dropped (and
    noted) if ``d`` refuses them."""
    locs.sort(key=lambda loc: loc.get("key") is not None)
    first = locs[0]
    meta = _plain_metadata(record)
    core = {k: record[k] for k in _CORE if record.get(k)}
    name = record["name"]
    args = dict(sha1=record.get("sha1") or None)
    try:
        d.add_resource(
            name,
            record["dtype"],
            first["archive_name"],
            metadata={**(meta or {}), **core} if core else meta,
            **args,
        )
    except RegistryRejected as err:
        if not core:
            raise
        d.add_resource(
            name, record["dtype"], first["archive_name"], metadata=meta, **args
        )
        report.notes.append(
            f"resource '{name}': {d.url} refused its "
            f"{' and '.join(core)} ({err}); copied without them"
        )
    if first.get("key") is not None:
        report.notes.append(
            f"resource '{name}': its key in '{first['archive_name']}' was not copied "
            "(no location without a key to register it in first)"
        )


def _same(
    record: Mapping[str, Any], other: Mapping[str, Any], report: CopyReport
) -> bool:
    """True if ``other`` (in dest) holds what ``record`` does; else a conflict."""
    name = record["name"]
    mine = ((record.get("sha1") or "").lower(), record.get("dtype"))
    theirs = ((other.get("sha1") or "").lower(), other.get("dtype"))
    if mine != theirs:
        report.conflicts.append(
            f"resource '{name}' already exists in the destination with other "
            f"content (sha1 {theirs[0] or 'none'}, dtype {theirs[1]}; here sha1 "
            f"{mine[0] or 'none'}, dtype {mine[1]}): left alone"
        )
        return False
    if _plain_metadata(record) != _plain_metadata(other):
        report.conflicts.append(
            f"resource '{name}' already exists in the destination with other "
            "metadata: left alone"
        )
        return False
    report.unchanged += 1
    return True


def _relink(
    s: Registry, d: Registry, archives: Mapping[str, dict], report: CopyReport
) -> None:
    from nbank_core.archive import CONFIG_NAME, read_config
    from nbank_core.fsutil import atomic_write_text
    from nbank_core.mounts import list_mounts, local_root

    mounts = list_mounts()
    for archive in archives.values():
        if archive.get("scheme") != "neurobank":
            continue
        for where in local_root(archive, mounts):
            try:
                cfg = read_config(where)
            except (NbankError, OSError):
                continue  # not mounted here
            if same_registry(cfg.registry, d.url):
                break
            if not same_registry(cfg.registry, s.url):
                report.notes.append(
                    f"the archive at '{cfg.path}' names {cfg.registry}, not {s.url}: "
                    "left alone"
                )
                break
            fname = cfg.path / CONFIG_NAME
            doc = json.loads(fname.read_text(encoding="utf-8"))
            doc["registry"] = d.url
            st = os.stat(fname)
            atomic_write_text(
                fname,
                json.dumps(doc, indent=2) + "\n",
                mode=st.st_mode & 0o7777,
                gid=st.st_gid,
                overwrite=True,
            )
            report.relinked.append(cfg.path)
            break
