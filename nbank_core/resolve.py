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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nbank_core import ids
from nbank_core.archive import ArchiveConfig, read_config
from nbank_core.errors import NbankError, NotFound
from nbank_core.registry import Registry

__all__ = ["Located", "Resolver"]

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
            "on this host: mount that archive here or fetch the file"
        )


class Resolver:
    """Resolves ids to archived files through ``registry``, caching hits for ``ttl``
    seconds. Thread-safe."""

    def __init__(self, registry: Registry, ttl: float = 10.0) -> None:
        self.registry = registry
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Located]] = {}
        self._archives: dict[str, ArchiveConfig | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"registry": self.registry, "ttl": self.ttl}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["registry"], state["ttl"])  # type: ignore[misc]

    def locate_many(self, names: Iterable[str]) -> dict[str, Located]:
        """Returns ``{id: Located}`` for the registered ids among ``names`` (any
        written form). Unregistered ids are absent; registry errors propagate."""
        wanted = [ids.parse_identifier(n)[1] for n in names]
        now = time.monotonic()
        found: dict[str, Located] = {}
        with self._lock:
            for n in wanted:
                hit = self._cache.get(n)
                if hit is not None and now - hit[0] < self.ttl:
                    found[n] = hit[1]
        missing = [n for n in dict.fromkeys(wanted) if n not in found]
        if missing:
            records = self.registry.locate_resources(missing)
            unlocated = [n for n in missing if n not in records]
            if unlocated:  # registered with no location: bulk/locations omits them
                for name, rec in self.registry.get_resources(unlocated).items():
                    records[name] = {**rec, "locations": []}
            shards: dict[Path, dict[str, Path]] = {}
            fetched = time.monotonic()  # a slow bulk call must not age its answers
            with self._lock:
                for name, rec in records.items():
                    loc = self._located(name, rec, shards)
                    self._cache[name] = (fetched, loc)
                    found[name] = loc
        return found

    def locate(self, name: str) -> Located:
        """Returns the Located for one id; raises NotFound if it is not registered."""
        ident = ids.parse_identifier(name)[1]
        loc = self.locate_many([ident]).get(ident)
        if loc is None:
            raise NotFound(f"'{ident}' is not registered in {self.registry.url}")
        return loc

    def path(self, name: str) -> Path:
        """Returns the archived file of one id, or raises NotFound saying why."""
        return self.locate(name).require_path()

    def forget(self, name: str | None = None) -> None:
        """Drops cached answers (for ``name``, or all)."""
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(name, None)

    # -- helpers ---------------------------------------------------------------
    def _archive(self, root: str) -> ArchiveConfig | None:
        if root not in self._archives:
            try:
                self._archives[root] = read_config(root)
            except (NbankError, OSError):
                self._archives[root] = None  # not mounted here
        return self._archives[root]

    def _located(
        self, name: str, rec: dict[str, Any], shards: dict[Path, dict[str, Path]]
    ) -> Located:
        locations = tuple(
            loc if isinstance(loc, dict) else {"archive_name": loc}
            for loc in rec.get("locations") or ()
        )
        path = None
        for loc in locations:
            if loc.get("scheme") != LOCAL_SCHEME or not loc.get("root"):
                continue
            cfg = self._archive(loc["root"])
            if cfg is not None:
                path = _find(cfg, name, rec.get("filename"), shards)
                if path is not None:
                    break
        return Located(name, rec.get("sha1"), rec.get("filename"), locations, path)


def _find(
    cfg: ArchiveConfig,
    name: str,
    filename: str | None,
    shards: dict[Path, dict[str, Path]],
) -> Path | None:
    """Finds the stored file: predicted names by ``stat``, then one listing of the
    shard shared by every id of the batch that missed."""
    for path in cfg.candidate_paths(name, filename):
        if os.path.lexists(path):
            return path
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
    return index.get(name)
