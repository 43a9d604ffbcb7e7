"""The Registry contract: what every registry backend does, documented once.

Two backends fulfil it: :class:`~nbank_core.registry.http.HttpRegistry` speaks to a
django-neurobank server, :class:`~nbank_core.registry.sqlite.SqliteRegistry` keeps
the same records in one SQLite file. Both return records as plain dicts of the shape
django-neurobank serialises, so callers never care which backend they hold:

- datatype: ``{"name", "content_type", "extension"}``
- archive: ``{"name", "scheme", "root", "accessibility"}``
- resource: ``{"name", "sha1", "dtype", "filename", "metadata", "experimenter",
  "animal", "locations": [archive names], "created_by", "created_on"}``
- location: ``{"archive_name", "scheme", "root", "resource_name", "key"}``
- located resource (bulk): ``{"name", "sha1", "filename", "locations": [location]}``

Errors are the members of :mod:`nbank_core.errors`: ``NotFound`` for a missing
record, ``AlreadyExists`` for a taken name or sha1 (or a location added twice),
``RegistryRejected`` for other refusals, ``AuthError``, ``RegistryUnavailable`` and
``BadResponse`` for the HTTP backend's transport failures.

Downloads (the bytes of a resource, for a host where no archive holding it is
mounted) are served by the HTTP backend only; the embedded one raises NotFound.

>>> from nbank_core.registry import open_registry
>>> reg = open_registry("sqlite:///:memory:")
>>> reg.add_datatype("wav", "audio/wav")["name"]
'wav'
>>> reg.close()
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

from nbank_core.errors import IntegrityError, NotFound
from nbank_core.fsutil import atomic_output

__all__ = [
    "BULK_BATCH",
    "ArchiveRecord",
    "DatatypeRecord",
    "LocatedRecord",
    "LocationRecord",
    "Registry",
    "RegistryInfo",
    "ResourceRecord",
]


class RegistryInfo(TypedDict):
    """``info()``: what the registry says of itself."""

    name: str
    version: str
    api_version: str


class DatatypeRecord(TypedDict, total=False):
    """A datatype; ``extension`` and ``downloadable`` where the registry has them."""

    name: str
    content_type: str
    extension: str | None
    downloadable: bool


class ArchiveRecord(TypedDict):
    """An archive: ``root`` is its directory for the ``neurobank`` scheme."""

    name: str
    scheme: str
    root: str
    accessibility: str


class LocationRecord(TypedDict, total=False):
    """One place a resource is stored."""

    archive_name: str
    scheme: str
    root: str
    resource_name: str
    key: str | None


class ResourceRecord(TypedDict, total=False):
    """A resource as django-neurobank serialises it (``locations``: archive
    names)."""

    name: str
    sha1: str | None
    dtype: str
    filename: str
    metadata: dict[str, Any] | None
    experimenter: str | None
    animal: str | None
    locations: list[str]
    created_by: str | None
    created_on: str


class LocatedRecord(TypedDict):
    """A resource with its full locations, as the bulk location lookup returns."""

    name: str
    sha1: str | None
    filename: str
    locations: list[LocationRecord]


#: names sent in one bulk request (django-neurobank on SQLite fails at 999)
BULK_BATCH = 500


class Registry(abc.ABC):
    """One registry of identifiers. Backends subclass this and implement every method.

    ``url`` is the registry's canonical URL: full identifiers are
    ``<url>resources/<id>/``. Registries are context managers; ``close()`` frees
    connections and is safe to call twice.
    """

    url: str

    # -- the registry itself -------------------------------------------------
    @abc.abstractmethod
    def info(self) -> RegistryInfo:
        """Returns ``{"name", "version", "api_version"}``."""

    # -- datatypes ------------------------------------------------------------
    @abc.abstractmethod
    def list_datatypes(self) -> list[DatatypeRecord]:
        """Returns every datatype, ordered by name."""

    @abc.abstractmethod
    def get_datatype(self, name: str) -> DatatypeRecord:
        """Returns one datatype; raises NotFound."""

    @abc.abstractmethod
    def add_datatype(
        self, name: str, content_type: str, extension: str | None = None
    ) -> DatatypeRecord:
        """Adds a datatype; raises AlreadyExists if the name is taken."""

    # -- archives -------------------------------------------------------------
    @abc.abstractmethod
    def list_archives(
        self,
        *,
        name: str | None = None,
        scheme: str | None = None,
        root: str | None = None,
    ) -> list[ArchiveRecord]:
        """Returns archives; ``name`` and ``scheme`` are prefix filters, ``root`` an
        exact (case-insensitive) match."""

    @abc.abstractmethod
    def get_archive(self, name: str) -> ArchiveRecord:
        """Returns one archive; raises NotFound."""

    @abc.abstractmethod
    def add_archive(
        self,
        name: str,
        root: str,
        *,
        scheme: str = "neurobank",
        accessibility: str = "local",
    ) -> ArchiveRecord:
        """Adds an archive; raises AlreadyExists if the name or (scheme, root) is
        taken."""

    def find_archive_by_root(
        self, root: str, scheme: str = "neurobank"
    ) -> ArchiveRecord | None:
        """Returns the archive registered for exactly ``root``, or None.

        The server matches roots without case; two archives whose roots differ
        only in case are different directories here, so the match is exact."""
        for archive in self.list_archives(root=str(root)):
            if archive.get("scheme") == scheme and archive.get("root") == str(root):
                return archive
        return None

    # -- resources ------------------------------------------------------------
    @abc.abstractmethod
    def add_resource(
        self,
        name: str | None,
        dtype: str,
        archive: str,
        *,
        sha1: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ResourceRecord:
        """Registers a resource located in ``archive`` and returns its record.

        ``name=None`` asks the registry for an 8-character base-36 id. The
        ``experimenter`` and ``animal`` keys of metadata become the record's fields.
        Raises AlreadyExists (name or sha1 taken), NotFound (dtype or archive) or
        RegistryRejected.
        """

    @abc.abstractmethod
    def get_resource(self, name: str) -> ResourceRecord:
        """Returns one resource record; raises NotFound."""

    @abc.abstractmethod
    def get_resources(self, names: Iterable[str]) -> dict[str, ResourceRecord]:
        """Returns ``{name: record}`` for the known names, in bulk; unknown names
        are omitted."""

    @abc.abstractmethod
    def locate_resources(self, names: Iterable[str]) -> dict[str, LocatedRecord]:
        """Returns ``{name: {"name", "sha1", "filename", "locations": [location]}}``
        for the known names that have a location, in bulk."""

    @abc.abstractmethod
    def search(self, **filters: Any) -> Iterator[ResourceRecord]:
        """Yields resources matching django-neurobank's filters, ordered by name.

        ``name``, ``dtype`` and ``location`` match case-insensitive substrings;
        ``sha1`` and ``archive`` exactly; ``metadata__<key>`` equals the value
        (JSON-decoded when it parses), ``metadata__<key>__neq`` excludes it.
        """

    @abc.abstractmethod
    def update_metadata(self, name: str, metadata: Mapping[str, Any]) -> ResourceRecord:
        """Merges ``metadata`` into the resource's; a ``None`` value deletes a key.
        Returns the updated record; raises NotFound."""

    @abc.abstractmethod
    def delete_resource(self, name: str) -> None:
        """Deletes the resource and its locations; raises NotFound."""

    def find_sha1(self, sha1: str) -> ResourceRecord | None:
        """Returns the resource whose content has this sha1, or None."""
        for record in self.search(sha1=sha1.lower()):
            return record
        return None

    # -- locations ------------------------------------------------------------
    @abc.abstractmethod
    def list_locations(self, name: str) -> list[LocationRecord]:
        """Returns the resource's locations; raises NotFound for an unknown id."""

    @abc.abstractmethod
    def add_location(
        self, name: str, archive: str, key: str | None = None
    ) -> LocationRecord:
        """Adds a location; raises NotFound or AlreadyExists."""

    @abc.abstractmethod
    def remove_location(self, name: str, archive: str) -> None:
        """Removes a location; raises NotFound."""

    # -- downloads ------------------------------------------------------------
    #: True for a backend that serves the files of resources (django-neurobank
    #: does, for datatypes marked downloadable and archives the server can read)
    serves_downloads: bool = False

    def download_size(self, name: str) -> int:
        """Returns the size in bytes of the file the registry serves for ``name``.

        Downloads are reads: they never send credentials. Every download method
        raises NotFound for an unknown id, for a resource the registry does not
        serve (its datatype is not downloadable, or no archive the server can read
        holds it) and on a registry that serves no downloads (an embedded one);
        RegistryUnavailable after the retries of a transient failure.
        """
        raise self._no_downloads(name)

    def read_download(self, name: str, start: int = 0, end: int | None = None) -> bytes:
        """Returns bytes ``start`` to ``end`` (exclusive; None: to the end; both
        non-negative) of the file the registry serves for ``name``, reading no
        more of the answer than needed."""
        raise self._no_downloads(name)

    def download(
        self, name: str, dest: str | os.PathLike[str], *, sha1: str | None = None
    ) -> Path:
        """Downloads the file of ``name`` to ``dest`` and returns ``dest``.

        Streamed in large blocks to a temp file in ``dest``'s directory, fsynced,
        checked against ``sha1`` (hex, ``sha1:`` prefix allowed) when given, then
        renamed onto ``dest``; on any error the temp file is removed and ``dest``
        is left as it was (IntegrityError for a sha1 mismatch).
        """
        if not self.serves_downloads:
            raise self._no_downloads(name)
        target = Path(dest)
        want = None if sha1 is None else sha1.lower().removeprefix("sha1:")
        with atomic_output(target, overwrite=True) as out:
            got = self._download_into(name, out)
            if want is not None and got != want:
                raise IntegrityError(
                    f"SHA1 hash of the download of '{name}' from {self.url} ({got}) "
                    f"does not match the known hash: expected {want}. Deleted the "
                    "download for safety; the registry's copy may be corrupt: tell "
                    "its administrator"
                )
        return target

    def _download_into(self, name: str, out: BinaryIO) -> str:
        """Writes the file of ``name`` into ``out`` (from its start, truncating
        what an interrupted attempt left) and returns its sha1 hex: the one hook
        a backend that sets ``serves_downloads`` implements for :meth:`download`.
        """
        raise self._no_downloads(name)

    def _no_downloads(self, name: str) -> NotFound:
        return NotFound(
            f"cannot download '{name}': the registry at {self.url} serves no "
            "downloads (an embedded registry never does); mount an archive that "
            "holds it on this host"
        )

    # -- lifetime -------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional for backends with no resources
        """Frees connections; safe to call more than once."""

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
