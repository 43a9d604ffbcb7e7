"""What the registry knows about the ids of one workflow, asked in bulk.

Snakemake creates a storage object for every input and output while it builds the
DAG, and then asks each for ``exists``, ``mtime``, ``size`` and ``checksum``. The
provider notes every id it hands out (:meth:`Lookup.add`); the first question
about any id sends every id noted so far in one bulk request (500 ids each), so
the number of registry requests grows with the waves of new ids, not with the
number of inputs.

Registered resources are immutable, so what was found is kept for the life of the
process; an id that was not found is asked again next time (a job may have
deposited it since).

>>> class FakeResolver:
...     calls = 0
...     def locate_many(self, ids):
...         FakeResolver.calls += 1
...         return {i: i.upper() for i in ids if i != "missing"}
>>> lookup = Lookup(FakeResolver())
>>> for i in ("a", "b", "missing"):
...     lookup.add(i)
>>> lookup.get("a"), lookup.get("b"), lookup.get("missing"), FakeResolver.calls
('A', 'B', None, 2)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from nbank_core import Located

__all__ = ["Lookup"]


class Lookup:
    """A cache of ``id -> Located`` over a :class:`nbank_core.Resolver`, filled by
    bulk requests. Thread-safe."""

    def __init__(self, resolver: Any) -> None:
        self._resolver = resolver
        self._lock = threading.Lock()
        self._known: dict[str, Located] = {}
        self._pending: set[str] = set()
        #: bulk lookups made (each is one request per 500 ids, plus one for ids
        #: that are registered without a location)
        self.batches = 0

    def add(self, ident: str) -> None:
        """Notes an id to include in the next bulk request."""
        with self._lock:
            if ident not in self._known:
                self._pending.add(ident)

    def get(self, ident: str) -> Located | None:
        """The resource ``ident``, or None if it is not registered."""
        with self._lock:
            hit = self._known.get(ident)
        if hit is not None:
            return hit
        return self.resolve([ident]).get(ident)

    def resolve(self, extra: Iterable[str] = ()) -> dict[str, Located | None]:
        """Looks up every noted id (and ``extra``) not yet known, in bulk; returns
        what this request found, None for the ids that are not registered."""
        with self._lock:
            batch = (self._pending | set(extra)) - self._known.keys()
            self._pending.clear()
        if not batch:
            return {}
        try:
            found = self._resolver.locate_many(sorted(batch))
        except BaseException:
            with self._lock:
                self._pending |= batch
            raise
        with self._lock:
            self.batches += 1
            self._known.update(found)
        return {i: found.get(i) for i in batch}

    def known(self, ident: str) -> Located | None:
        """What is already known about ``ident``, without asking the registry."""
        with self._lock:
            return self._known.get(ident)

    def remember(self, located: Located) -> None:
        """Records a resource this process has just deposited."""
        with self._lock:
            self._known[located.id] = located
            self._pending.discard(located.id)

    def forget(self, ident: str) -> None:
        """Drops what is known about ``ident`` (after it was removed)."""
        with self._lock:
            self._known.pop(ident, None)
