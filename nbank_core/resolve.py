"""From identifiers to files: id -> registry record -> archive mounted here -> path.

One bulk registry call serves a batch of ids (500 per request); archives are
recognised by their root directory being mounted on this host. A :class:`Resolver`
keeps what it found for a few seconds (never a "missing"), so engines that ask
about the same inputs several times do not ask the registry each time.

>>> import tempfile, pathlib
>>> from nbank_core import init_archive, deposit
>>> from nbank_core.registry import open_registry
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> arch = init_archive(tmp / "arch", registry="sqlite://" + str(tmp / "r.sqlite"))
>>> reg = open_registry(arch.registry)
>>> _ = reg.add_datatype("txt", "text/plain")
>>> _ = (tmp / "n1.txt").write_text("hi")
>>> _ = deposit(arch.path, [tmp / "n1.txt"], dtype="txt", registry=reg)
>>> Resolver(reg).path("n1").name
'n1.txt'
>>> reg.close()
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nbank_core import ids
from nbank_core.archive import ArchiveConfig, check_filename, read_config
from nbank_core.errors import (
    IntegrityError,
    InvalidIdentifier,
    NbankError,
    NotFound,
)
from nbank_core.mounts import list_mounts, local_root
from nbank_core.registry import Registry

__all__ = ["Located", "Resolver", "resolver_for"]

LOCAL_SCHEME = "neurobank"


@dataclasses.dataclass(frozen=True)
class Located:
    """A resource found through the registry. ``path`` is its file in an archive
    mounted here, or None; ``locations`` are every location the registry knows."""

    id: str
    sha1: str | None
    filename: str | None
    locations: tuple[dict[str, Any], ...]
    path: Path | None

    def require_path(self) -> Path:
        """Returns ``path`` or raises NotFound saying where the resource lives."""
        if self.path is not None:
            return self.path
        where = ", ".join(
            f"archive '{loc.get('archive_name')}' ({loc.get('scheme')}:"
            f"{loc.get('root')})"
            for loc in self.locations
        )
        raise NotFound(
            f"'{self.id}' is registered in {where or 'no archive'}, but no copy is "
            "on this host: mount that archive here (if it is mounted at another "
            "path, record it with 'nbank archive mount NAME PATH') or fetch the file"
        )


class Resolver:
    """Resolves ids to archived files through ``registry``. Thread-safe.

    The one lookup cache of neurobank, with one policy:

    - a resource found is kept for ``ttl`` seconds (registered resources are
      immutable; only their locations change);
    - a resource not found is not kept: a question asks again (a job may have
      deposited it since), except that ids fetched ahead of time (with
      :meth:`expect`, or ``keep_misses``) answer from that fetch for
      ``miss_ttl`` seconds (engines ask about an output several times in a row
      before its job runs; a deposit by this process is known at once);
    - ids noted with :meth:`expect` travel with the next bulk request, so engines
      that ask about many ids one at a time send one request per wave of ids.

    ``clock`` (seconds, monotonic) is injectable for tests.
    """

    def __init__(
        self,
        registry: Registry,
        ttl: float = 10.0,
        *,
        miss_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.ttl = ttl
        self.miss_ttl = min(miss_ttl, ttl)
        self.clock = clock
        self.calls = 0  # bulk lookups sent (each one request per 500 ids)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Located]] = {}
        self._misses: dict[str, float] = {}  # fetched ahead, not found: miss_ttl
        self._expected: set[str] = set()
        # archives and mounts seen on this host, with when: kept ``ttl`` seconds
        self._archives: dict[str, tuple[float, ArchiveConfig | None]] = {}
        self._mounts: tuple[float, dict[str, Path]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"registry": self.registry, "ttl": self.ttl, "miss": self.miss_ttl}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["registry"], state["ttl"], miss_ttl=state.get("miss", 1.0)
        )

    def expect(self, names: Iterable[str]) -> None:
        """Notes ids that will be asked about soon: the next lookup fetches them
        in the same bulk request."""
        now = self.clock()
        with self._lock:
            self._expected.update(
                n
                for n in names
                if n not in self._cache or now - self._cache[n][0] >= self.ttl
            )

    def locate_many(
        self, names: Iterable[str], *, fresh: bool = False, keep_misses: bool = False
    ) -> dict[str, Located]:
        """Returns ``{id: Located}`` for the registered ids among ``names`` (any
        written form). Unregistered ids are absent; registry errors propagate.
        ``fresh`` asks the registry whatever is cached; ``keep_misses`` fetches
        ahead: each id found missing answers from this call for ``miss_ttl``
        seconds (as ids fetched with :meth:`expect` do)."""
        names = list(names)
        if not fresh and len(names) == 1:  # an engine asks about one id, often
            hit = self.cached(names[0])  # its plain id
            if hit is not None:
                return {names[0]: hit}
        now = self.clock()
        wanted = list(dict.fromkeys(ids.parse_identifier(n)[1] for n in names))
        found: dict[str, Located] = {}
        missing: list[str] = []
        with self._lock:
            for n in wanted:
                hit = None if fresh else self._cache.get(n)
                if hit is not None and now - hit[0] < self.ttl:
                    found[n] = hit[1]
                    continue
                seen = None if fresh else self._misses.get(n)
                if seen is None or now - seen >= self.miss_ttl:
                    missing.append(n)
            extra = self._expected.difference(missing, found)
            self._expected.clear()
        if missing:
            try:
                fetched = self._fetch([*missing, *sorted(extra)])
            except BaseException:
                with self._lock:
                    self._expected |= extra
                raise
            found.update((n, fetched[n]) for n in missing if n in fetched)
            with self._lock:
                ahead = set(extra) | (set(missing) if keep_misses else set())
                for n in ahead - fetched.keys():
                    self._misses[n] = self.clock()
        elif extra:
            with self._lock:
                self._expected |= extra
        return found

    def cached(self, name: str) -> Located | None:
        """The fresh cached answer for the plain id ``name``, or None: no parsing,
        no lock, no request, for callers that ask many times a second."""
        hit = self._cache.get(name)
        if hit is not None and self.clock() - hit[0] < self.ttl:
            return hit[1]
        return None

    def locate(self, name: str) -> Located:
        """Returns the Located for one id; raises NotFound if it is not registered."""
        for loc in self.locate_many([name]).values():
            return loc
        ident = ids.parse_identifier(name)[1]
        raise NotFound(f"'{ident}' is not registered in {self.registry.url}")

    def path(self, name: str) -> Path:
        """Returns the archived file of one id, or raises NotFound saying why."""
        return self.locate(name).require_path()

    def remember(self, located: Located) -> None:
        """Records a resource this process has just deposited or found."""
        with self._lock:
            self._cache[located.id] = (self.clock(), located)
            self._misses.pop(located.id, None)
            self._expected.discard(located.id)

    def remember_deposit(self, result: Any, archive: ArchiveConfig) -> Located:
        """Records what a successful deposit (a ``DepositResult``) made in
        ``archive``, and returns it."""
        located = Located(
            result.id,
            result.sha1,
            result.path.name if result.path is not None else None,
            (
                {
                    "archive_name": None,
                    "scheme": LOCAL_SCHEME,
                    "root": str(archive.path),
                },
            ),
            result.path,
        )
        self.remember(located)
        return located

    def forget(self, name: str | None = None) -> None:
        """Drops cached answers (for ``name``, or all)."""
        with self._lock:
            if name is None:
                self._cache.clear()
                self._misses.clear()
            else:
                self._cache.pop(name, None)
                self._misses.pop(name, None)

    def _fetch(self, names: list[str]) -> dict[str, Located]:
        """One bulk lookup of ``names``; caches and returns what was found."""
        records = self.registry.locate_resources(names)
        unlocated = [n for n in names if n not in records]
        if unlocated:  # registered with no location: bulk/locations omits them
            for name, rec in self.registry.get_resources(unlocated).items():
                records[name] = {**rec, "locations": []}
        shards: dict[Path, dict[str, Path]] = {}
        fetched = self.clock()  # a slow bulk call must not age its answers
        out: dict[str, Located] = {}
        with self._lock:
            self.calls += 1
            for name, rec in records.items():
                if name not in names:
                    continue  # a registry may answer more than it was asked
                loc = self._located(name, rec, shards)
                self._cache[name] = (fetched, loc)
                self._misses.pop(name, None)
                out[name] = loc
        return out

    # -- helpers ---------------------------------------------------------------
    def _archive(self, root: str, name: str | None = None) -> ArchiveConfig | None:
        """The archive ``name`` (registered at ``root``) on this host: where the
        user mounted it (:mod:`nbank_core.mounts`), else at its root."""
        now = self.clock()  # what is mounted may change: asked again after ttl
        if self._mounts is None or now - self._mounts[0] >= self.ttl:
            self._mounts = (now, list_mounts())
        for where in local_root({"name": name, "root": root}, self._mounts[1]):
            seen = self._archives.get(where)
            if seen is None or now - seen[0] >= self.ttl:
                try:
                    seen = (now, read_config(where))
                except (NbankError, OSError):
                    seen = (now, None)  # not mounted here
                self._archives[where] = seen
            if seen[1] is not None:
                return seen[1]
        return None

    def _located(
        self, name: str, rec: dict[str, Any], shards: dict[Path, dict[str, Path]]
    ) -> Located:
        """The Located of one registry answer. Nothing the registry says may lead
        out of an archive: the id, the file name and the archive roots are checked
        (IntegrityError naming the id if not) before any path is made of them."""
        try:
            ids.validate_id(name)
        except InvalidIdentifier:
            raise IntegrityError(
                f"the registry at {self.registry.url} answered with the resource "
                f"name {name!r}, which is not an id; refusing it: ask the "
                "registry's administrator to correct the record"
            ) from None
        filename = rec.get("filename")
        if filename is not None:
            check_filename(name, filename)
        locations = tuple(
            loc if isinstance(loc, dict) else {"archive_name": loc}
            for loc in rec.get("locations") or ()
        )
        path = None
        for loc in locations:
            if loc.get("scheme") != LOCAL_SCHEME or not loc.get("root"):
                continue
            root = loc["root"]
            if (
                not isinstance(root, str)
                or "\0" in root
                or not os.path.isabs(root)
                or os.path.normpath(root) != (root.rstrip("/") or "/")
            ):
                raise IntegrityError(
                    f"the registry gave {root!r} as the root of archive "
                    f"'{loc.get('archive_name')}', which holds '{name}'; that is not "
                    "an absolute, normalised path, so it is refused: ask the "
                    "registry's administrator to correct the archive"
                )
            cfg = self._archive(root, loc.get("archive_name"))
            if cfg is not None:
                path = _find(cfg, name, filename, shards)
                if path is not None:
                    break
        return Located(name, rec.get("sha1"), filename, locations, path)


def _find(
    cfg: ArchiveConfig,
    name: str,
    filename: str | None,
    shards: dict[Path, dict[str, Path]],
) -> Path | None:
    """Finds the stored file: predicted names by ``stat``, then one listing of the
    shard shared by every id of the batch that missed. What is found must stay in
    its shard (:meth:`ArchiveConfig.confined`), or IntegrityError."""
    for path in cfg.candidate_paths(name, filename):
        found = cfg.stored(name, path)
        if found is not None:
            return found
    shard = cfg.shard_dir(name)
    index = shards.get(shard)
    if index is None:
        index = {}
        try:
            with os.scandir(shard) as it:
                for entry in it:
                    stem = entry.name.partition(".")[0]
                    index.setdefault(stem, Path(entry.path))
        except FileNotFoundError:
            pass
        shards[shard] = index
    found = index.get(name)
    return None if found is None else cfg.confined(name, found)


_shared_lock = threading.Lock()
_shared: dict[Any, Resolver] = {}
_shared_pid: list[int] = [0]


def resolver_for(settings: Any) -> Resolver:
    """The Resolver this process shares for the registry of ``settings`` (a
    :class:`~nbank_core.config.Settings`): every front end in one process asks
    through one cache. A forked child starts with its own."""
    from nbank_core.registry import canonical_url

    key = (canonical_url(settings.registry), settings.auth, settings.timeout)
    with _shared_lock:
        if _shared_pid[0] != os.getpid():
            _shared.clear()
            _shared_pid[0] = os.getpid()
        resolver = _shared.get(key)
        if resolver is None:
            resolver = _shared[key] = Resolver(settings.open())
        return resolver


def clear_shared() -> None:
    """Forgets every shared Resolver of this process (closing their registries)."""
    with _shared_lock:
        for resolver in _shared.values():
            resolver.registry.close()
        _shared.clear()
