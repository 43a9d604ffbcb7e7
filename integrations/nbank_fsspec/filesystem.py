"""``nbank://<id>``: every registered resource as a file, for pandas, xarray and dask.

Reads resolve the id through the registry with the core's lookup cache (the
:class:`nbank_core.Resolver` this process shares for the registry, or one of the
filesystem's own when given ``ttl``). When an archive holding the resource is
mounted on this host, the archived file itself is opened (so
:func:`fsspec.open_local` returns its path); otherwise the file is read through the
registry's download methods, if the registry serves that
datatype. Writes deposit on commit (see :mod:`nbank_fsspec.writing`).

Paths are ids, in the core's query syntax (:func:`nbank_core.parse_query`):
``nbank://ID``, ``nbank:ID``, ``nbank:/ID``, ``ID`` or a full identifier URL (whose
id is then looked up in this filesystem's registry), each with an optional
``.ext``; when writing, that extension is the archived file's. Inside a resource
deposited as a directory (a zarr store, a BIDS-like folder), ``ID/inner/path``
names an entry: it can be read, listed (``ls``, ``find``, ``glob``, ``walk``) and
copied out (``get(..., recursive=True)``), where the archive is mounted; it stays
inside the resource (:func:`nbank_core.inner_path`). The root (``""``)
is the registry: ``ls("")`` refuses to list every resource, and lists the matches of
registry filters when given some: ``fs.ls("", dtype="wav", metadata__animal="st32")``.

Errors are builtins: ``FileNotFoundError`` for an id that is not registered (or has
no copy this host can read), ``ConnectionError`` when the registry cannot be
reached, ``PermissionError`` for changing a resource (see
:mod:`nbank_fsspec.immutable`). ``exists()`` raises the ``ConnectionError`` rather
than answering False.

>>> import tempfile, pathlib, fsspec
>>> from nbank_core import init_archive, add_datatype
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> url = "sqlite://" + str(tmp / "registry.sqlite")
>>> arch = init_archive(tmp / "archive", registry=url)
>>> _ = add_datatype("csv-table", "text/csv", "csv", registry=url)
>>> fs = fsspec.filesystem("nbank", registry=url, archive=arch.path, dtype="csv-table")
>>> fs.pipe("nbank://table_1", b"a,b\\n1,2\\n")
>>> fs.cat_file("nbank://table_1", start=4)
b'1,2\\n'
>>> fs.info("table_1")["dtype"], fs.open_local("table_1") == fsspec.open_local(
...     "nbank://table_1", registry=url)
('csv-table', True)
>>> fs.modified("nbank:table_1").tzname()
'UTC'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fsspec.utils import stringify_path

from nbank_core import (
    InvalidIdentifier,
    Located,
    NotFound,
    Resolver,
    inner_path,
    parse_query,
    resolve_settings,
    resolver_for,
    search,
    split_prefix,
)
from nbank_fsspec.archived import entry_info, list_entries
from nbank_fsspec.errors import ResourceImmutable, builtin_errors
from nbank_fsspec.immutable import Immutable
from nbank_fsspec.reading import Reading
from nbank_fsspec.settings import ResolvingCached
from nbank_fsspec.writing import Depositor, DepositTransaction

__all__ = ["NbankFileSystem"]

DOWNLOAD_ARCHIVE = "registry"  # the location a registry lists when it serves a file
#: write modes, and whether each accepts the same content already registered
WRITE_MODES = {"wb": True, "w+b": True, "wb+": True, "xb": False, "x+b": False}


class NbankFileSystem(Immutable, Reading, metaclass=ResolvingCached):
    """The resources of one registry, by id.

    ``registry`` and ``archive``: as :func:`nbank_core.resolve_settings` decides
    (with an archive, its registry; an explicit different ``registry`` is a
    ValueError); ``auth``: ``"user:password"`` or a pair for writes (default
    ``NBANK_AUTH`` or ``~/.netrc``); ``archive``: the archive writes deposit into;
    ``dtype`` and ``metadata``: what written resources are registered with (also
    accepted per file: ``fs.open(url, "wb", dtype=..., metadata=...)``); ``ttl``:
    seconds an id's location is remembered (None: the lookup cache this process
    shares for the registry, with the core's policy).

    >>> fs = NbankFileSystem(registry="sqlite:///:memory:")
    >>> fs._strip_protocol("nbank://st32_1_2_1"), fs.exists("st32_1_2_1")
    ('st32_1_2_1', False)
    """

    protocol = "nbank"
    root_marker = ""
    transaction_type = DepositTransaction
    # False on the class, which universal-pathlib reads to decide that ids are not
    # local paths; True on instances, which fsspec.open_local() checks before
    # asking the opened file for its path.
    local_file = False

    def __init__(
        self,
        *,
        registry: str | None = None,
        auth: str | tuple[str, str] | None = None,
        archive: str | os.PathLike[str] | None = None,
        dtype: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        settings = resolve_settings(
            registry, archive=archive, auth=auth, timeout=timeout
        )
        # one shared cache per process and registry; a pickle re-creates the
        # filesystem from its arguments, so a dask worker shares its own process's
        self._resolver = (
            resolver_for(settings)
            if ttl is None
            else Resolver(settings.open(), ttl=ttl)
        )
        self.registry = self._resolver.registry
        self.local_file = True
        self._writer = Depositor(self.registry, settings, dtype, metadata)

    def __repr__(self) -> str:
        return f"<NbankFileSystem {self.registry.url}>"

    # -- paths -------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """``nbank://ID``, ``nbank:ID``, ``ID`` (each with an optional ``.ext``,
        and ``/inner/path`` inside a directory resource) or a full identifier URL
        -> ``ID`` (``ID.ext``, ``ID/inner/path``); what is not a query stays as
        written, to be refused by the call that uses it."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        body, prefixed = split_prefix(str(stringify_path(path)))
        if not prefixed and "://" in body:
            try:
                query = parse_query(body)
            except InvalidIdentifier:
                return body
            return query.id + query.ext
        return body.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return name if name.startswith("nbank://") else f"nbank://{name}"

    def _split(self, path: Any, *, writing: bool = False) -> tuple[str, str, str]:
        """``(id, ext, inner)``: the resource ``path`` names (its first segment,
        a query), and the path inside it (``""``: the resource itself). A path
        that names no resource raises NotFound (InvalidIdentifier, a ValueError,
        when ``writing``)."""
        text = self._strip_protocol(path)
        head, _, inner = text.partition("/")
        try:
            query = parse_query(head)
        except InvalidIdentifier as err:
            if writing:
                raise
            raise NotFound(f"no resource can be named {text!r}: {err}") from None
        return query.id, query.ext, inner.strip("/")

    def _ident(self, path: Any) -> str:
        """The id of the resource ``path`` names (NotFound if none can be)."""
        return self._split(path)[0]

    # -- resolving -----------------------------------------------------------------
    @builtin_errors
    def locate(self, paths: Iterable[Any]) -> dict[str, Located]:
        """Resolves many ids in bulk (500 per request) and remembers the answers
        for ``ttl`` seconds, so opening each afterwards asks the registry nothing.
        Returns ``{id: Located}`` for the registered ones."""
        idents = []
        for p in paths:
            try:
                idents.append(self._ident(p))
            except NotFound:
                continue
        return self._resolver.locate_many(idents)

    def _served(self, loc: Located) -> bool:
        """True if the registry serves the resource's file (it lists itself
        among the resource's locations then)."""
        return self.registry.serves_downloads and any(
            where.get("archive_name") == DOWNLOAD_ARCHIVE
            and where.get("scheme") in ("http", "https")
            for where in loc.locations
        )

    def _local(self, loc: Located, inner: str) -> Path | None:
        """The file or directory on this host of the entry ``inner`` (``""``: the
        resource itself); None for a resource not mounted here that the registry
        serves. Raises NotFound saying where the resource lives otherwise, or why
        ``inner`` names nothing."""
        if loc.path is None:
            if inner or not self._served(loc):
                loc.require_path()  # raises: no local copy, and none served
            return None
        if not inner:
            return loc.path
        try:
            return inner_path(loc.path, inner)
        except InvalidIdentifier as err:
            raise NotFound(f"nothing in '{loc.id}' can be named: {err}") from None

    def _entry(self, path: Any) -> tuple[Located, str, Path | None]:
        """``(located, inner, local path or None)`` of what ``path`` names."""
        ident, _, inner = self._split(path)
        loc = self._resolver.locate(ident)
        return loc, inner, self._local(loc, inner)

    def _stat(self, path: Any) -> tuple[Located, str, Path | None, Any]:
        """As :meth:`_entry`, with the entry's ``os.stat`` (None when served)."""
        loc, inner, local = self._entry(path)
        if local is None:
            return loc, inner, None, None
        try:
            return loc, inner, local, os.stat(local)
        except (FileNotFoundError, NotADirectoryError):
            where = f"'{inner}' in the resource '{loc.id}'" if inner else f"'{loc.id}'"
            raise NotFound(
                f"{where} is not at '{local}'"
                + (": no such entry" if inner else ": the archive lacks its file")
            ) from None

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forgets remembered locations (of ``path``, or all)."""
        if path is None:
            self._resolver.forget()
        else:
            try:
                self._resolver.forget(self._ident(path))
            except NotFound:
                pass
        super().invalidate_cache(path)

    # -- describing ----------------------------------------------------------------
    @builtin_errors
    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        """``name``, ``size``, ``type`` (``file``, or ``directory`` for a directory
        resource, an entry of one, or the root), ``local_path`` (None unless
        mounted here); for a resource itself also ``sha1``, ``dtype``,
        ``filename``, ``url`` (the download URL, or None), ``created`` (a UTC
        datetime) and ``metadata``. Raises FileNotFoundError if no copy is
        readable from here."""
        if self._strip_protocol(path) == "":
            return {"name": "", "size": 0, "type": "directory"}
        loc, inner, local, st = self._stat(path)
        if inner:
            return entry_info(f"{loc.id}/{inner}", local, st)  # type: ignore[arg-type]
        if st is not None:
            out = entry_info(loc.id, local, st)  # type: ignore[arg-type]
            url = None
        else:
            size = self.registry.download_size(loc.id)
            out = {"name": loc.id, "size": size, "type": "file", "local_path": None}
            url = f"{self.registry.url}download/{loc.id}/"
        record = self.registry.get_resource(loc.id)
        out.update(
            sha1=loc.sha1,
            dtype=record.get("dtype"),
            filename=loc.filename,
            url=url,
            created=_utc(record.get("created_on")),
            metadata=record.get("metadata") or {},
        )
        return out

    @builtin_errors
    def exists(self, path: Any, **kwargs: Any) -> bool:
        """True if the id is registered and a copy is readable from here (and,
        inside a directory resource, the entry is there); False if not; raises
        (never False) when the registry cannot be asked."""
        if self._strip_protocol(path) == "":
            return True
        try:
            self._stat(path)
        except NotFound:
            return False
        return True

    def lexists(self, path: Any, **kwargs: Any) -> bool:
        return self.exists(path)

    def isfile(self, path: Any) -> bool:
        return self._is(path, "file")

    def isdir(self, path: Any) -> bool:
        return self._is(path, "directory")

    @builtin_errors
    def _is(self, path: Any, kind: str) -> bool:
        if self._strip_protocol(path) == "":
            return kind == "directory"
        try:
            st = self._stat(path)[3]
        except NotFound:
            return False
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        return is_dir == (kind == "directory")

    @builtin_errors
    def created(self, path: Any) -> dt.datetime:
        """When the resource ``path`` names (or is inside) was registered: the
        record's ``created_on``, a UTC datetime."""
        loc = self._stat(path)[0]
        when = _utc(self.registry.get_resource(loc.id).get("created_on"))
        if when is None:
            raise OSError(
                f"the registry's record of '{loc.id}' has no creation time "
                "(created_on): ask the registry's administrator to correct it"
            )
        return when

    def modified(self, path: Any) -> dt.datetime:
        """The same as :meth:`created`: resources never change once registered."""
        return self.created(path)

    @builtin_errors
    def ls(self, path: Any, detail: bool = True, **filters: Any) -> list[Any]:
        """A file resource lists itself; a directory resource, or a directory
        inside one, lists its entries (``ID/name``). The root lists the resources
        matching registry ``filters`` (django-neurobank's: ``dtype``, ``name``,
        ``sha1``, ``metadata__<key>``...), with ``size`` None; without filters it
        refuses."""
        if self._strip_protocol(path) != "":
            loc, inner, _, st = self._stat(path)
            if st is not None and stat.S_ISDIR(st.st_mode):
                entries = list_entries(loc.id, loc.path, inner)  # type: ignore[arg-type]
            else:
                entries = [self.info(path)]
        else:
            if not filters:
                raise ValueError(
                    f"listing every resource of {self.registry.url} is refused: a "
                    "registry may hold millions. Give filters, e.g. "
                    "fs.ls('', dtype='wav'), or use nbank_core.search()"
                )
            entries = [
                {
                    "name": r["name"],
                    "size": None,
                    "type": "file",
                    "sha1": r.get("sha1"),
                    "dtype": r.get("dtype"),
                    "filename": r.get("filename"),
                    "created": _utc(r.get("created_on")),
                    "metadata": r.get("metadata") or {},
                }
                for r in search(self.registry, **filters)
            ]
        return entries if detail else [e["name"] for e in entries]

    @builtin_errors
    def ukey(self, path: Any) -> str:
        """The resource's sha1 (of the resource and the entry's path, inside a
        directory resource): resources are immutable, so it never changes."""
        ident, _, inner = self._split(path)
        loc = self._resolver.locate(ident)
        if not loc.sha1:
            return super().ukey(path)
        if not inner:
            return loc.sha1
        return hashlib.sha1(
            f"{loc.sha1}/{inner}".encode(), usedforsecurity=False
        ).hexdigest()

    def checksum(self, path: Any) -> int:
        return int(self.ukey(path), 16)

    # -- opening -------------------------------------------------------------------
    @builtin_errors
    def _open(
        self,
        path: Any,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        if mode == "rb":
            return self._open_read(path, block_size, cache_options, **kwargs)
        if mode in WRITE_MODES:
            return self._open_write(path, mode, autocommit, **kwargs)
        raise ValueError(
            f"mode {mode!r} is not supported: resources are read ('rb') or written "
            "once ('wb' or 'w+b'; 'xb' to refuse an id already registered); they "
            "are never appended to or changed"
        )

    def _open_write(self, path: Any, mode: str, autocommit: bool, **kwargs: Any) -> Any:
        ident, ext, inner = self._split(path, writing=True)
        if inner:
            raise ResourceImmutable(
                f"writing nbank://{ident}/{inner} is refused: nothing is added to or "
                "changed inside a resource, and a new resource is written under an "
                "id alone (nbank://ID); deposit a whole directory with "
                "'nbank deposit'"
            )
        exist_ok = WRITE_MODES[mode]
        if not exist_ok and self._resolver.locate_many([ident]):
            raise FileExistsError(
                f"nbank://{ident} is already registered in {self.registry.url}: mode "
                f"{mode!r} (pipe_file mode='create') refuses to write an existing "
                "resource; read it, or write under a new id"
            )
        # fsspec's cache options are for reads; a deposit takes none of them
        for key in ("cache_type", "size"):
            kwargs.pop(key, None)
        return self._writer.open(
            self, ident, ext=ext, exist_ok=exist_ok, autocommit=autocommit, **kwargs
        )

    def pipe_file(
        self, path: Any, value: bytes, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        """Deposits ``value`` under the id (``mode="create"``: an id already
        registered is an error, even with the same content)."""
        with self.open(path, "xb" if mode == "create" else "wb", **kwargs) as f:
            f.write(value)


def _utc(value: Any) -> dt.datetime | None:
    """A registry's timestamp (ISO 8601 text) as a UTC datetime; naive ones are
    UTC. None for none.

    >>> _utc("2024-03-01T10:00:00.5Z"), _utc("2024-03-01T12:00:00+02:00").hour
    (datetime.datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=datetime.timezone.utc), 10)
    """
    if not value:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)
