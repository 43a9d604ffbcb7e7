"""Resources by id: every location of one, the first reachable here, records in
bulk, metadata changes, and what a file on disk is.

These are the calls a reader of the ``nbank.core`` documentation of neurobank 0.13
looks for (``find``, ``get``, ``describe_many``, ``update``), with a registry
argument that is an open :class:`~nbank_core.registry.Registry` or a URL (None:
``NBANK_REGISTRY``, else the embedded default).

>>> import tempfile, pathlib
>>> from nbank_core.api import add_datatype, deposit, init_archive
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> url = "sqlite://" + str(tmp / "r.sqlite")
>>> arch = init_archive(tmp / "lab", registry=url)
>>> _ = add_datatype("txt", "text/plain", registry=url)
>>> _ = (tmp / "note1.txt").write_text("hello")
>>> _ = deposit(arch.path, [tmp / "note1.txt"], dtype="txt")
>>> get("note1", registry=url).name
'note1.txt'
>>> [r.get("metadata") for r in update(["note1", "nosuch"], {"site": 3}, registry=url)]
[{'site': 3}, None]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nbank_core import hashing, ids
from nbank_core.api import RegistryArg, open_registry_from
from nbank_core.archive import read_config
from nbank_core.errors import (
    ConfigError,
    IntegrityError,
    InvalidIdentifier,
    NotFound,
)
from nbank_core.mounts import list_mounts, local_root

__all__ = [
    "FileVerdict",
    "describe_many",
    "find",
    "get",
    "location_of",
    "update",
    "verify_file",
]


def location_of(
    location: Mapping[str, Any], name: str, mounts: Mapping[str, Path] | None = None
) -> Path | str | None:
    """What one registry location of ``name`` is from this host: the file (a Path)
    for a neurobank archive mounted here, a URL (str) for an http(s) or tape
    location, None for an archive not here or a scheme not known."""
    scheme, root = location.get("scheme"), location.get("root")
    if not isinstance(root, str) or not root:
        return None
    if scheme == "neurobank":
        for where in local_root(location, mounts):
            try:
                cfg = read_config(where)
            except (NotFound, ConfigError, OSError):
                continue  # not an archive mounted here
            path = cfg.find_file(name)  # IntegrityError: a file leading out of it
            if path is not None:
                return path
        return None
    if scheme in ("http", "https"):
        netloc, _, base = root.partition("/")
        base = "/".join(p for p in base.split("/") if p)
        return f"{scheme}://{netloc}/{base + '/' if base else ''}{name}/"
    if scheme == "tape":
        return f"tape://{root}/{name}"
    return None


def find(name: str, *, registry: RegistryArg = None) -> list[Path | str | None]:
    """Returns what each location of ``name`` is from this host (see
    :func:`location_of`), in the registry's order; an empty list for a resource
    with no locations. A full URL names its own registry. Raises NotFound for an
    id that is not registered."""
    base, ident = ids.parse_identifier(name)
    mounts = list_mounts()
    with open_registry_from(base or registry) as reg:
        locations = reg.list_locations(ident)
    return [location_of(loc, ident, mounts) for loc in locations]


def get(name: str, *, registry: RegistryArg = None) -> Path | str | None:
    """Returns the first location of ``name`` reachable from here (a file in an
    archive mounted here, else a URL), or None. Raises NotFound for an id that is
    not registered."""
    for where in find(name, registry=registry):
        if where is not None:
            return where
    return None


def describe_many(
    names: Iterable[str], *, registry: RegistryArg = None
) -> Iterator[dict[str, Any]]:
    """Yields the record of each registered id among ``names`` (bulk requests);
    ids that are not registered are skipped."""
    wanted = list(dict.fromkeys(names))
    with open_registry_from(registry) as reg:
        found = reg.get_resources(wanted)
    for name in wanted:
        if name in found:
            yield found[name]


def update(
    names: Iterable[str],
    metadata: Mapping[str, Any],
    *,
    registry: RegistryArg = None,
    auth: str | tuple[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Merges ``metadata`` into each resource's (a key set to None is deleted; the
    ``experimenter`` and ``animal`` keys are the record's fields, None clears them)
    and yields each updated record, or ``{"name": id, "error": "not found"}`` for
    an id that is not registered."""
    with open_registry_from(registry, auth) as reg:
        for name in names:
            try:
                yield reg.update_metadata(ids.validate_id(name), dict(metadata))
            except (NotFound, InvalidIdentifier):
                yield {"name": name, "error": "not found"}


@dataclasses.dataclass(frozen=True)
class FileVerdict:
    """What a file is, by its content. ``status`` is ``ok`` (named like a
    registered id and its hash matches), ``failed`` (named like one, and it does
    not; ``named`` says which), ``matches`` (``names`` hold the content), ``none``
    (nothing registered holds it) or ``missing`` (no such file)."""

    status: str
    named: str | None = None
    names: tuple[str, ...] = ()


def verify_file(
    path: str | os.PathLike[str], *, registry: RegistryArg = None
) -> FileVerdict:
    """Hashes ``path`` (a file or directory) and says what it is in the registry:
    a file named like a registered id (its name up to the last suffix) is checked
    against that record; any other is looked up by its hash."""
    from nbank_core.api import verify

    p = Path(path)
    if not os.path.lexists(p) or not p.exists():
        return FileVerdict("missing")
    try:
        named: str | None = ids.validate_id(p.stem)
    except InvalidIdentifier:
        named = None
    with open_registry_from(registry) as reg:
        own = reg.get_resources([named]).get(named) if named else None
        try:
            found = verify(p, registry=reg)
        except IntegrityError:
            return FileVerdict("failed", named)
        if own is not None:
            if hashing.record_sha1(own) is None or named not in {
                r.get("name") for r in found
            }:
                return FileVerdict("failed", named)
            return FileVerdict("ok", named)
    names = tuple(dict.fromkeys(r["name"] for r in found))
    return FileVerdict("matches" if names else "none", None, names)
