"""``nbank://<id>``: every registered resource as a file, for pandas, xarray and dask.

Reads resolve the id through the registry with the core's lookup cache (the
:class:`nbank_core.Resolver` this process shares for the registry, or one of the
filesystem's own when given ``ttl``). When an archive holding the resource is
mounted on this host, the archived file itself is opened (so
:func:`fsspec.open_local` returns its path); otherwise the file is read through the
registry's download methods, if the registry serves that
datatype. Writes deposit on commit (see :mod:`nbank_fsspec.writing`).

Paths are ids, in the core's query syntax (:func:`nbank_core.parse_query`):
``nbank://ID``, ``nbank:ID``, ``ID`` or a full identifier URL (whose id is then looked
up in this filesystem's registry), each with an optional ``.ext``; when writing, that
extension is the archived file's. The root (``""``)
is the registry: ``ls("")`` refuses to list every resource, and lists the matches of
registry filters when given some: ``fs.ls("", dtype="wav", metadata__animal="st32")``.

Errors are builtins: ``FileNotFoundError`` for an id that is not registered (or has
no copy this host can read), ``ConnectionError`` when the registry cannot be
reached. ``exists()`` raises the latter rather than answering False.

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
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from fsspec.implementations.local import LocalFileOpener, LocalFileSystem
from fsspec.spec import AbstractFileSystem
from fsspec.utils import stringify_path

from nbank_core import (
    InvalidIdentifier,
    Located,
    NotFound,
    Resolver,
    parse_query,
    resolve_settings,
    resolver_for,
    search,
    split_prefix,
)
from nbank_fsspec.download import SMALL, RemoteFile
from nbank_fsspec.errors import builtin_errors
from nbank_fsspec.settings import ResolvingCached
from nbank_fsspec.writing import Depositor, DepositTransaction

__all__ = ["NbankFileSystem"]

DOWNLOAD_ARCHIVE = "registry"  # the location a registry lists when it serves a file


class NbankFileSystem(AbstractFileSystem, metaclass=ResolvingCached):
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
        self._local = LocalFileSystem()
        self._writer = Depositor(self.registry, settings, dtype, metadata)

    def __repr__(self) -> str:
        return f"<NbankFileSystem {self.registry.url}>"

    # -- paths -------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """``nbank://ID``, ``nbank:ID``, ``ID`` (each with an optional ``.ext``) or a
        full identifier URL -> ``ID`` (``ID.ext``); what is not a query stays as
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

    def _ident(self, path: Any) -> str:
        """The id ``path`` names; an invalid one names no resource (NotFound)."""
        text = self._strip_protocol(path)
        try:
            return parse_query(text).id
        except InvalidIdentifier as err:
            raise NotFound(f"no resource can be named {text!r}: {err}") from None

    # -- resolving -----------------------------------------------------------------
    @builtin_errors
    def locate(self, paths: Iterable[Any]) -> dict[str, Located]:
        """Resolves many ids in bulk (500 per request) and remembers the answers
        for ``ttl`` seconds, so opening each afterwards asks the registry nothing.
        Returns ``{id: Located}`` for the registered ones."""
        idents = []
        for p in paths:
            try:
                idents.append(parse_query(self._strip_protocol(p)).id)
            except InvalidIdentifier:
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

    def _require_served(self, loc: Located) -> None:
        """Returns if the registry serves a resource not mounted here; else raises
        NotFound saying where it lives."""
        if not self._served(loc):
            loc.require_path()  # raises: the resource has no local path either

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

    # -- reading -----------------------------------------------------------------
    @builtin_errors
    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        """``name``, ``size``, ``type`` (``file``, or ``directory`` for a directory
        resource or the root), ``sha1``, ``dtype``, ``filename``, ``local_path``
        (None unless mounted here), ``url`` (the download URL, or None),
        ``created`` and ``metadata``. Raises FileNotFoundError if no copy is
        readable from here."""
        if self._strip_protocol(path) == "":
            return {"name": "", "size": 0, "type": "directory"}
        ident = self._ident(path)
        loc = self._resolver.locate(ident)
        url = None
        if loc.path is not None:
            st = os.stat(loc.path)
            is_dir = stat.S_ISDIR(st.st_mode)
            size, kind = (None, "directory") if is_dir else (st.st_size, "file")
        else:
            self._require_served(loc)
            size, kind = self.registry.download_size(ident), "file"
            url = f"{self.registry.url}download/{ident}/"
        record = self.registry.get_resource(ident)
        return {
            "name": ident,
            "size": size,
            "type": kind,
            "sha1": loc.sha1,
            "dtype": record.get("dtype"),
            "filename": loc.filename,
            "local_path": None if loc.path is None else str(loc.path),
            "url": url,
            "created": record.get("created_on"),
            "metadata": record.get("metadata") or {},
        }

    @builtin_errors
    def exists(self, path: Any, **kwargs: Any) -> bool:
        """True if the id is registered and a copy is readable from here; False if
        not; raises (never False) when the registry cannot be asked."""
        if self._strip_protocol(path) == "":
            return True
        try:
            loc = self._resolver.locate(self._ident(path))
        except NotFound:
            return False
        return loc.path is not None or self._served(loc)

    def lexists(self, path: Any, **kwargs: Any) -> bool:
        return self.exists(path)

    def isfile(self, path: Any) -> bool:
        return self._is(path, "file")

    def isdir(self, path: Any) -> bool:
        return self._is(path, "directory")

    def _is(self, path: Any, kind: str) -> bool:
        try:
            return self.info(path)["type"] == kind
        except FileNotFoundError:
            return False

    @builtin_errors
    def ls(self, path: Any, detail: bool = True, **filters: Any) -> list[Any]:
        """An id lists itself. The root lists the resources matching registry
        ``filters`` (django-neurobank's: ``dtype``, ``name``, ``sha1``,
        ``metadata__<key>``...), with ``size`` None; without filters it refuses."""
        if self._strip_protocol(path) != "":
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
                    "created": r.get("created_on"),
                    "metadata": r.get("metadata") or {},
                }
                for r in search(self.registry, **filters)
            ]
        return entries if detail else [e["name"] for e in entries]

    @builtin_errors
    def open_local(self, path: Any) -> str:
        """The archived file of the id on this host; FileNotFoundError saying where
        the resource lives if no archive holding it is mounted here."""
        return str(self._resolver.path(self._ident(path)))

    @builtin_errors
    def cat_file(
        self, path: Any, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """The bytes ``start:end`` (negative: from the end) of the resource, in one
        read of the local file or one request to the registry."""
        return self._read(self._resolver.locate(self._ident(path)), start, end)

    @builtin_errors
    def cat(
        self, path: Any, recursive: bool = False, on_error: str = "raise", **kwargs: Any
    ) -> Any:
        """As fsspec's; for a list, the ids are resolved with bulk requests first,
        and those answers serve every read however long the reads take."""
        if not isinstance(path, list | tuple):
            return super().cat(path, recursive=recursive, on_error=on_error, **kwargs)
        names = list(dict.fromkeys(self._strip_protocol(p) for p in path))
        located = self.locate(names)
        out: dict[str, Any] = {}
        for name in names:
            try:
                ident = self._ident(name)  # an invalid id raises saying why
                loc = located.get(ident)
                if loc is None:
                    raise NotFound(
                        f"'{ident}' is not registered in {self.registry.url}"
                    )
                out[name] = self._read(loc, kwargs.get("start"), kwargs.get("end"))
            except (OSError, ValueError) as err:
                if on_error == "raise":
                    raise
                if on_error == "return":
                    out[name] = err
        return out

    def _read(self, loc: Located, start: int | None, end: int | None) -> bytes:
        if loc.path is not None:
            with open(loc.path, "rb") as f:
                lo, hi = _bounds(start, end, os.fstat(f.fileno()).st_size)
                f.seek(lo)
                return f.read(max(hi - lo, 0))
        self._require_served(loc)
        if (start or 0) < 0 or (end is not None and end < 0):  # needs the size
            lo, hi = _bounds(start, end, self.registry.download_size(loc.id))
            return self.registry.read_download(loc.id, lo, hi)
        return self.registry.read_download(loc.id, start or 0, end)

    @builtin_errors
    def ukey(self, path: Any) -> str:
        """The resource's sha1: resources are immutable, so it never changes."""
        loc = self._resolver.locate(self._ident(path))
        return loc.sha1 or super().ukey(path)

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
        if mode in ("wb", "xb"):
            query = parse_query(self._strip_protocol(path))
            return self._writer.open(
                self,
                query.id,
                ext=query.ext,
                exist_ok=mode == "wb",
                autocommit=autocommit,
                **kwargs,
            )
        raise ValueError(
            f"mode {mode!r} is not supported: resources are read ('rb') or written "
            "once ('wb', or 'xb' to refuse even identical content); they are never "
            "appended to or changed"
        )

    def _open_read(
        self,
        path: Any,
        block_size: int | None,
        cache_options: dict[str, Any] | None,
        **kwargs: Any,
    ) -> Any:
        ident = self._ident(path)
        loc = self._resolver.locate(ident)
        if loc.path is not None:
            return LocalFileOpener(str(loc.path), "rb", fs=self._local)
        self._require_served(loc)
        size = self.registry.download_size(ident)
        data = self.registry.read_download(ident) if size <= SMALL else None
        return RemoteFile(
            self,
            ident,
            self.registry,
            size,
            data,
            block_size=block_size or "default",
            cache_options=cache_options,
            **kwargs,
        )

    def pipe_file(
        self, path: Any, value: bytes, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        """Deposits ``value`` under the id (``mode="create"``: even identical
        content already there is an error)."""
        with self.open(path, "xb" if mode == "create" else "wb", **kwargs) as f:
            f.write(value)


def _bounds(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """Python-slice bounds ``start:end`` within a file of ``size`` bytes.

    >>> _bounds(-3, None, 10), _bounds(2, -1, 10), _bounds(None, 99, 10)
    ((7, 10), (2, 9), (0, 10))
    """
    lo = (
        0
        if start is None
        else (max(size + start, 0) if start < 0 else min(start, size))
    )
    hi = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
    return lo, hi
