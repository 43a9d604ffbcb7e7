"""The embedded registry: django-neurobank's records and rules in one SQLite file.

:class:`SqliteRegistry` answers as django-neurobank 0.12.0 does (record shapes, name
rules, uniqueness, filters, ordering), so a lab can start with a file and move to a
server without changing code. It is safe across threads and processes
(:mod:`~nbank_core.registry.sqlite_db`); its search filters are listed in
:mod:`~nbank_core.registry.sqlite_filters`. There are no users or animals:
``experimenter`` and ``animal`` are free strings, ``created_by`` is the login name.

>>> reg = SqliteRegistry(":memory:")
>>> _ = reg.add_datatype("wav", "audio/wav", "wav")
>>> _ = reg.add_archive("lab", "/data/lab")
>>> rec = reg.add_resource("st32_1", "wav", "lab", metadata={"animal": "st32"})
>>> rec["filename"], rec["metadata"], rec["locations"]
('st32_1.wav', {'animal': 'st32'}, ['lab'])
>>> reg.close()
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sized
from datetime import UTC, datetime
from typing import Any

from nbank_core import __version__
from nbank_core.errors import AlreadyExists, NotFound, RegistryRejected
from nbank_core.ids import auto_id
from nbank_core.registry.base import BULK_BATCH, Registry
from nbank_core.registry.sqlite_db import Database
from nbank_core.registry.sqlite_filters import LIKE, compile_filters, like

__all__ = ["SCHEMA_VERSION", "SqliteRegistry"]

#: the schema's version, kept in ``PRAGMA user_version`` for future migrations
SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE datatypes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " content_type TEXT NOT NULL DEFAULT '', extension TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE archives (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " scheme TEXT NOT NULL, root TEXT NOT NULL,"
    " accessibility INTEGER NOT NULL DEFAULT 0, UNIQUE (scheme, root))",
    "CREATE TABLE resources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " sha1 TEXT UNIQUE, dtype_id INTEGER NOT NULL REFERENCES datatypes (id),"
    " metadata TEXT, experimenter TEXT, animal TEXT, created_by TEXT,"
    " created_on TEXT NOT NULL)",
    "CREATE TABLE locations (id INTEGER PRIMARY KEY, key TEXT,"
    " resource_id INTEGER NOT NULL REFERENCES resources (id) ON DELETE CASCADE,"
    " archive_id INTEGER NOT NULL REFERENCES archives (id) ON DELETE CASCADE,"
    " UNIQUE (resource_id, archive_id))",
    "CREATE UNIQUE INDEX location_key ON locations (archive_id, key)"
    " WHERE key IS NOT NULL",
)
_SLUG_RE = re.compile(r"[-a-zA-Z0-9_]+")
_SHA1_RE = re.compile(r"[0-9a-fA-F]{40}")
_ACCESSIBILITY = ("local", "remote", "offline")  # stored as their index
_CORE = ("animal", "experimenter")
_DATATYPES = "SELECT name, content_type, extension FROM datatypes"
_ARCHIVES = "SELECT name, scheme, root, accessibility FROM archives"
_RESOURCES = (
    "SELECT r.id, r.name, r.sha1, d.name AS dtype, d.extension, r.metadata,"
    " r.experimenter, r.animal, r.created_by, r.created_on"
    " FROM resources r JOIN datatypes d ON d.id = r.dtype_id"
)
_LOCATIONS = (
    "SELECT a.name AS archive_name, a.scheme, a.root, r.name AS resource_name,"
    " l.key FROM locations l JOIN archives a ON a.id = l.archive_id"
    " JOIN resources r ON r.id = l.resource_id"
)
_ARCHIVE_NAMES = (
    "SELECT l.resource_id, a.name FROM locations l JOIN archives a"
    " ON a.id = l.archive_id WHERE l.resource_id IN ({}) ORDER BY a.name"
)
_LOCAL_FIRST = " ORDER BY a.accessibility, l.id"  # as the server lists them
_PAGE = 500  # resources per read transaction in search()


def _check(field: str, value: Any, max_length: int, slug: bool = False) -> str:
    """Returns ``value`` if the server would accept it for ``field``."""
    if not isinstance(value, str):
        raise RegistryRejected(f"invalid {field} {value!r}: expected a string")
    if slug and not value:
        raise RegistryRejected(f"invalid {field}: this field may not be blank")
    if len(value) > max_length:
        raise RegistryRejected(
            f"invalid {field} '{value[:40]}...': ensure this field has no more than "
            f"{max_length} characters"
        )
    if slug and _SLUG_RE.fullmatch(value) is None:
        raise RegistryRejected(
            f"invalid {field} {value!r}: can only contain letters, numbers, "
            "underscores, and hyphens"
        )
    return value


class SqliteRegistry(Registry):
    """A registry in the SQLite file at ``path`` (``":memory:"``: in this process).

    Nothing touches the disk until the first call, which creates the parent
    directories and the schema if ``create`` (else a missing file is NotFound; see
    :func:`~nbank_core.registry.open_registry`, whose default is not to create).
    ``user`` is recorded as ``created_by`` (default: the
    login name); ``timeout`` is how long a write waits for another's lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        user: str | None = None,
        timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        path = os.fspath(path)
        memory = path in (":memory:", "")
        self.path = ":memory:" if memory else os.path.abspath(os.path.expanduser(path))
        self.url = "sqlite:///:memory:" if memory else "sqlite://" + self.path
        self.user = user
        label = f"the embedded registry {self.url}"
        self._db = Database(
            self.path,
            _SCHEMA,
            version=SCHEMA_VERSION,
            timeout=timeout,
            label=label,
            create=create,
        )

    def close(self) -> None:
        """Closes every connection; they reopen if the registry is used again (an
        in-memory registry then starts empty)."""
        self._db.close()

    def _id(self, conn: sqlite3.Connection, table: str, what: str, name: str) -> int:
        """The row id of a named record; raises NotFound."""
        row = _row(conn, f"SELECT id FROM {table} WHERE name = ?", name)  # noqa: S608
        if row is None:
            raise NotFound(
                f"no such {what} '{name}' in {self.url}: register it first, or check "
                "the spelling"
            )
        return row[0]

    # -- the registry, datatypes, archives ---------------------------------------
    def info(self) -> dict[str, Any]:
        name = "neurobank embedded registry"
        return {"name": name, "version": __version__, "api_version": "1.2"}

    def list_datatypes(self) -> list[dict[str, Any]]:
        with self._db.transaction() as conn:
            return [dict(row) for row in conn.execute(_DATATYPES + " ORDER BY name")]

    def get_datatype(self, name: str) -> dict[str, Any]:
        with self._db.transaction() as conn:
            row = _row(conn, _DATATYPES + " WHERE name = ?", name)
        if row is None:
            raise NotFound(f"no such dtype '{name}' in {self.url}")
        return dict(row)

    def add_datatype(
        self, name: str, content_type: str, extension: str | None = None
    ) -> dict[str, Any]:
        _check("dtype name", name, 32, slug=True)
        _check("content_type", content_type, 128)
        extension = _check("extension", extension or "", 8)
        with self._db.transaction(write=True) as conn:
            if _row(conn, "SELECT 1 FROM datatypes WHERE name = ?", name):
                raise AlreadyExists(f"a dtype with this name already exists: '{name}'")
            record = {"name": name, "content_type": content_type}
            _insert(conn, "datatypes", **record, extension=extension)
        return {**record, "extension": extension}

    def list_archives(
        self,
        *,
        name: str | None = None,
        scheme: str | None = None,
        root: str | None = None,
    ) -> list[dict[str, Any]]:
        """Returns archives by name; ``name`` and ``scheme`` are prefixes, ``root``
        is exact but (ASCII) case-insensitive, as on the server."""
        tests = [("name", name, "%"), ("scheme", scheme, "%"), ("root", root, "")]
        where = ["1"] + [column + LIKE for column, value, _ in tests if value]
        params = [like(str(value))[1:-1] + end for _, value, end in tests if value]
        sql = f"{_ARCHIVES} WHERE {' AND '.join(where)} ORDER BY name"
        with self._db.transaction() as conn:
            return [_archive(row) for row in conn.execute(sql, params)]

    def get_archive(self, name: str) -> dict[str, Any]:
        with self._db.transaction() as conn:
            row = _row(conn, _ARCHIVES + " WHERE name = ?", name)
        if row is None:
            raise NotFound(f"no such archive '{name}' in {self.url}")
        return _archive(row)

    def add_archive(
        self,
        name: str,
        root: str,
        *,
        scheme: str = "neurobank",
        accessibility: str = "local",
    ) -> dict[str, Any]:
        """Adds an archive; raises AlreadyExists if the name or (scheme, root) is
        taken. An unknown ``accessibility`` means local, as on the server."""
        root, access = str(root), str(accessibility).lower()
        _check("archive name", name, 32, slug=True)
        _check("scheme", scheme, 16)
        _check("root", root, 512)
        level = _ACCESSIBILITY.index(access) if access in _ACCESSIBILITY else 0
        with self._db.transaction(write=True) as conn:
            if _row(conn, "SELECT 1 FROM archives WHERE name = ?", name):
                raise AlreadyExists(
                    f"an archive with this name already exists: '{name}'"
                )
            taken = _row(
                conn, _ARCHIVES + " WHERE scheme = ? AND root = ?", scheme, root
            )
            if taken:
                raise AlreadyExists(
                    f"the fields scheme, root must make a unique set: archive "
                    f"'{taken[0]}' already has the root {root!r}; use that archive"
                )
            record = {"name": name, "scheme": scheme, "root": root}
            _insert(conn, "archives", **record, accessibility=level)
        return {**record, "accessibility": _ACCESSIBILITY[level]}

    # -- resources -----------------------------------------------------------------
    def _records(
        self, conn: sqlite3.Connection, where: str, params: list[Any], tail: str = ""
    ) -> list[dict[str, Any]]:
        """Resource records matching ``where``, with their archives by name."""
        rows = conn.execute(f"{_RESOURCES} WHERE {where} {tail}", params).fetchall()
        archives: dict[int, list[str]] = defaultdict(list)
        for ids in _chunks([row["id"] for row in rows]):
            for rid, archive in conn.execute(_ARCHIVE_NAMES.format(_marks(ids)), ids):
                archives[rid].append(archive)
        return [_resource(row, archives[row["id"]]) for row in rows]

    def _get(self, conn: sqlite3.Connection, name: str) -> dict[str, Any]:
        found = self._records(conn, "r.name = ?", [name])
        if not found:
            raise NotFound(f"no such resource '{name}' in {self.url}")
        return found[0]

    def add_resource(
        self,
        name: str | None,
        dtype: str,
        archive: str,
        *,
        sha1: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Registers a resource located in ``archive`` and returns its record.

        ``name=None`` draws an 8-character base-36 id. ``metadata=None`` is stored
        as null, as the server does when a client sends none.
        """
        if name is not None:
            _check("name", name, 255, slug=True)
        if sha1 is not None:
            if not isinstance(sha1, str) or _SHA1_RE.fullmatch(sha1) is None:
                raise RegistryRejected(
                    f"invalid sha1 value {sha1!r}: expected 40 hexadecimal digits"
                )
            sha1 = sha1.lower()
        rest, core = _split_metadata(metadata)
        with self._db.transaction(write=True) as conn:
            exists = "SELECT name FROM resources WHERE {} = ?"
            if name is not None and _row(conn, exists.format("name"), name):
                raise AlreadyExists(
                    f"a resource with this name already exists: '{name}'"
                )
            if sha1 and (taken := _row(conn, exists.format("sha1"), sha1)):
                raise AlreadyExists(
                    f"a resource with this sha1 already exists: '{taken[0]}' has the "
                    f"content {sha1}; use that id instead of registering it again"
                )
            dtype_id = self._id(conn, "datatypes", "dtype", dtype)
            archive_id = self._id(conn, "archives", "archive", archive)
            while name is None:  # draw again on a collision
                drawn = auto_id()
                name = None if _row(conn, exists.format("name"), drawn) else drawn
            text = None if rest is None else json.dumps(rest)
            values = dict(name=name, sha1=sha1, dtype_id=dtype_id, metadata=text)
            values.update(core, created_by=self._user(), created_on=_now())
            rid = _insert(conn, "resources", **values)
            _insert(conn, "locations", resource_id=rid, archive_id=archive_id)
            return self._get(conn, name)

    def _user(self) -> str | None:
        if self.user is None:
            with contextlib.suppress(OSError, KeyError):
                self.user = getpass.getuser()
        return self.user

    def get_resource(self, name: str) -> dict[str, Any]:
        with self._db.transaction() as conn:
            return self._get(conn, name)

    def get_resources(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(names))):
            with self._db.transaction() as conn:
                records = self._records(conn, f"r.name IN ({_marks(chunk)})", chunk)
            out.update((record["name"], record) for record in records)
        return out

    def locate_resources(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """As the base; each resource's locations come local archives first."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(names))):
            where = f" WHERE r.name IN ({_marks(chunk)})"
            with self._db.transaction() as conn:
                found = conn.execute(_RESOURCES + where, chunk).fetchall()
                rows = conn.execute(_LOCATIONS + where + _LOCAL_FIRST, chunk).fetchall()
            for rec in (_resource(row, []) for row in found):
                out[rec["name"]] = {k: rec[k] for k in ("name", "sha1", "filename")}
                out[rec["name"]]["locations"] = []
            for row in rows:
                out[row["resource_name"]]["locations"].append(dict(row))
        return {name: rec for name, rec in out.items() if rec["locations"]}

    def search(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """As the base, with the filters :mod:`~nbank_core.registry.sqlite_filters`
        lists; raises RegistryRejected for a metadata lookup it lacks."""
        where, params = compile_filters(filters)
        return self._pages(where, params)

    def _pages(self, where: str, params: list[Any]) -> Iterator[dict[str, Any]]:
        after: list[str] = []
        while True:  # pages by name, each in its own short read transaction
            with self._db.transaction() as conn:
                more = " AND r.name > ?" if after else ""
                tail = f"ORDER BY r.name LIMIT {_PAGE}"
                page = self._records(conn, where + more, params + after, tail)
            yield from page
            if len(page) < _PAGE:
                return
            after = [page[-1]["name"]]

    def update_metadata(self, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """As the base; ``experimenter`` or ``animal`` set to None clears the field."""
        rest, core = _split_metadata(metadata)
        with self._db.transaction(write=True) as conn:
            row = _row(conn, "SELECT id, metadata FROM resources WHERE name = ?", name)
            if row is None:
                raise NotFound(f"no such resource '{name}' in {self.url}")
            merged = json.loads(row["metadata"] or "{}")
            for key, value in (rest or {}).items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            values = {"metadata": json.dumps(merged), **core}
            sets = ", ".join(f"{column} = :{column}" for column in values)
            sql = f"UPDATE resources SET {sets} WHERE id = :id"  # noqa: S608
            conn.execute(sql, {**values, "id": row["id"]})
            return self._get(conn, name)

    def delete_resource(self, name: str) -> None:
        with self._db.transaction(write=True) as conn:
            deleted = conn.execute("DELETE FROM resources WHERE name = ?", (name,))
            if not deleted.rowcount:  # its locations go with it (ON DELETE CASCADE)
                raise NotFound(f"no such resource '{name}' in {self.url}")

    # -- locations -----------------------------------------------------------------
    def list_locations(self, name: str) -> list[dict[str, Any]]:
        """As the base; local archives first, as on the server."""
        with self._db.transaction() as conn:
            self._id(conn, "resources", "resource", name)
            sql = _LOCATIONS + " WHERE r.name = ?" + _LOCAL_FIRST
            return [dict(row) for row in conn.execute(sql, (name,))]

    def add_location(
        self, name: str, archive: str, key: str | None = None
    ) -> dict[str, Any]:
        """As the base; AlreadyExists also if another resource has ``key`` there."""
        key = (_check("key", key, 1024) or None) if key is not None else None
        with self._db.transaction(write=True) as conn:
            rid = self._id(conn, "resources", "resource", name)
            aid = self._id(conn, "archives", "archive", archive)
            same = "SELECT 1 FROM locations WHERE archive_id = ? AND {} = ?"
            if _row(conn, same.format("resource_id"), aid, rid):
                raise AlreadyExists(
                    "the fields resource_name, archive_name must make a unique set: "
                    f"'{name}' is already located in '{archive}'"
                )
            if key and _row(conn, same.format("key"), aid, key):
                raise AlreadyExists(
                    f"another resource in archive '{archive}' already has key {key!r}"
                )
            lid = _insert(conn, "locations", resource_id=rid, archive_id=aid, key=key)
            return dict(_row(conn, _LOCATIONS + " WHERE l.id = ?", lid))

    def remove_location(self, name: str, archive: str) -> None:
        with self._db.transaction(write=True) as conn:
            gone = conn.execute(
                "DELETE FROM locations WHERE"
                " resource_id = (SELECT id FROM resources WHERE name = ?)"
                " AND archive_id = (SELECT id FROM archives WHERE name = ?)",
                (name, archive),
            ).rowcount
        if not gone:
            raise NotFound(f"no location of '{name}' in '{archive}' in {self.url}")


def _row(conn: sqlite3.Connection, sql: str, *params: Any) -> sqlite3.Row | None:
    return conn.execute(sql, params).fetchone()


def _insert(conn: sqlite3.Connection, table: str, **values: Any) -> int:
    """Inserts one row; returns its id."""
    sql = f"INSERT INTO {table} ({', '.join(values)}) VALUES ({_marks(values)})"  # noqa: S608
    return conn.execute(sql, tuple(values.values())).lastrowid


def _chunks(items: list[Any], size: int = BULK_BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(items: Sized) -> str:
    return ", ".join("?" * len(items))


def _now() -> str:
    """The time as the server prints it: ISO 8601 in UTC, with ``Z``."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _split_metadata(metadata: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Moves ``animal`` and ``experimenter`` out of metadata, as the serializer
    does; returns ``(the rest, {field: value})``."""
    if metadata is None:
        return None, {}
    if not isinstance(metadata, Mapping):
        raise RegistryRejected(f"metadata must be a dictionary, not {metadata!r}")
    core = {field: metadata[field] for field in _CORE if field in metadata}
    for field, value in core.items():
        if value is not None and not isinstance(value, str):
            raise RegistryRejected(f"invalid {field} {value!r}: expected a string")
    return {k: v for k, v in metadata.items() if k not in _CORE}, core


def _archive(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**dict(row), "accessibility": _ACCESSIBILITY[row["accessibility"]]}


def _resource(row: sqlite3.Row, locations: list[str]) -> dict[str, Any]:
    """A resource record as ``ResourceSerializer`` renders it."""
    rec = dict(row)
    del rec["id"]
    name, extension = rec["name"], rec.pop("extension").lstrip(".")
    metadata = None if rec["metadata"] is None else json.loads(rec["metadata"])
    copies = {k: rec[k] for k in _CORE if rec[k] is not None}
    if copies:  # where clients before API 1.2 read them
        metadata = {**(metadata or {}), **copies}
    filename = f"{name}.{extension}" if extension and "." not in name else name
    rec.update(name=name, filename=filename, metadata=metadata, locations=locations)
    return rec
