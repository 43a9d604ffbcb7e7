"""Existence checks in bulk: one registry request answers many ``exists()`` calls.

Luigi checks completeness one task at a time (``Worker.add`` calls
``task.complete()`` for the task, then for each of its dependencies), so a
pipeline of 1000 tasks would ask the registry 1000 times. Instead, each process
keeps one :class:`Lookup` per registry that knows every target made so far and
every :class:`~nbank_luigi.NbankTask` instantiated so far. The first ``exists()``
that cannot be answered from memory looks up, in one bulk request per 500 ids,
the asked id together with every id not yet asked and, if the asked id's
answer has gone stale, every answer found with it (ids looked up together tend
to be asked together again, e.g. the dependencies of one task at run time).

Answers are kept as follows: a resource found is trusted for ``[nbank]
cache_ttl`` seconds; a resource not found is a prefetched answer, given once
(to the next ``exists()`` of that id, within the same time) and then forgotten,
so a missing output is asked again whenever it is asked twice. Registry errors
propagate. :func:`refresh` bypasses memory (used after a task ran).

>>> clear_cache()
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from nbank_core import Located, Registry, Resolver, Settings

__all__ = ["Lookup", "clear_cache", "lookup_for", "prefetch", "refresh", "watch_task"]

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "lookups": {}, "tasks": []}


def _process_state() -> dict[str, Any]:
    """The state of this process; a forked child starts afresh (its parent's
    connections and locks are not its own)."""
    pid = os.getpid()
    if _state["pid"] != pid:
        _state.update(pid=pid, lookups={}, tasks=[])
    return _state


class Lookup:
    """What this process knows about the resources of one registry."""

    def __init__(self, settings: Settings, *, ttl: float, prefetch: bool) -> None:
        self.settings = settings
        self.ttl = ttl
        self.prefetch = prefetch
        self._registry: Registry | None = None
        self._resolver: Resolver | None = None
        self._lock = threading.Lock()
        # found resources: (when, what, number of the lookup that found them)
        self._found: dict[str, tuple[float, Located, int]] = {}
        self._fetches = 0
        # prefetched answers "not registered" (None) or "not in an archive here",
        # each given once: a deposit may be under way between register and publish
        self._once: dict[str, tuple[float, Located | None]] = {}
        self._pending: set[str] = set()  # ids of targets made, not yet looked up

    @property
    def registry(self) -> Registry:
        """The registry, opened on first use (connections are made lazily)."""
        if self._registry is None:
            self._registry = self.settings.open()
        return self._registry

    def note(self, ident: str) -> None:
        """Remembers that a target for ``ident`` exists and may be asked about."""
        if self.prefetch:
            with self._lock:
                if ident not in self._found:
                    self._pending.add(ident)

    def get(self, ident: str) -> Located | None:
        """Returns what the registry says of ``ident``: None if it is not
        registered; ``path`` is None if no archive mounted here holds it."""
        now = time.monotonic()
        with self._lock:
            hit = self._found.get(ident)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
            once = self._once.pop(ident, None)
            if once is not None and now - once[0] < self.ttl:
                return once[1]
        _expand_watched_tasks(self.prefetch)  # outside the lock: it makes targets
        with self._lock:
            batch = {ident}
            if self.prefetch:
                batch |= self._pending
                if hit is not None:  # gone stale: so did what was found with it
                    batch |= {
                        i
                        for i, (t, _, n) in self._found.items()
                        if n == hit[2] and now - t >= self.ttl
                    }
            found = self._fetch(batch)
            self._once.pop(ident, None)  # this answer is the one being given
            return found.get(ident)

    def exists(self, ident: str) -> bool:
        """True if ``ident`` is registered and its file is in an archive here."""
        loc = self.get(ident)
        return loc is not None and loc.path is not None

    def refresh(self, idents: Iterable[str]) -> dict[str, Located]:
        """Asks the registry about ``idents`` now, whatever is remembered."""
        with self._lock:
            return self._fetch(set(idents))

    def remember(self, located: Located) -> None:
        """Records a resource this process has just deposited."""
        with self._lock:
            self._fetches += 1  # a group of its own
            self._found[located.id] = (time.monotonic(), located, self._fetches)
            self._once.pop(located.id, None)
            self._pending.discard(located.id)

    def close(self) -> None:
        """Closes the registry's connections (reopened if used again)."""
        if self._registry is not None:
            self._registry.close()

    def _fetch(self, idents: set[str]) -> dict[str, Located]:
        if self._resolver is None:
            self._resolver = Resolver(self.registry, ttl=0.0)  # memory is ours
        found = self._resolver.locate_many(sorted(idents))
        now = time.monotonic()  # a slow server must not make answers stale at once
        self._fetches += 1
        for ident in idents:
            loc = found.get(ident)
            if loc is not None and loc.path is not None:
                self._found[ident] = (now, loc, self._fetches)
                self._once.pop(ident, None)
            else:
                self._found.pop(ident, None)
                self._once[ident] = (now, loc)
        self._pending.difference_update(idents)
        return found

    def __repr__(self) -> str:
        return f"<Lookup {self.settings.registry}>"


def lookup_for(settings: Settings) -> Lookup:
    """Returns this process's :class:`Lookup` for ``settings`` (made on first use
    with the ``[nbank]`` ``cache_ttl`` and ``prefetch`` of that moment)."""
    with _lock:
        lookups = _process_state()["lookups"]
        lookup = lookups.get(settings)
        if lookup is None:
            from nbank_luigi.config import nbank

            conf = nbank()
            lookup = Lookup(settings, ttl=conf.cache_ttl, prefetch=conf.prefetch)
            lookups[settings] = lookup
        return lookup


def watch_task(task: Any) -> None:
    """Registers a task whose outputs are likely to be checked soon (called when
    an :class:`~nbank_luigi.NbankTask` is instantiated)."""
    with _lock:
        _process_state()["tasks"].append(weakref.ref(task))


def _expand_watched_tasks(expand: bool = True) -> None:
    """Makes the targets of every watched task, so their ids become pending (or,
    if not ``expand``, just forgets the tasks)."""
    with _lock:
        state = _process_state()
        refs, state["tasks"] = state["tasks"], []
    if not expand:
        return
    from luigi.task import flatten

    for ref in refs:
        task = ref()
        if task is None:
            continue
        try:
            flatten(task.output())  # each NbankTarget made notes its id
        except Exception as err:  # noqa: BLE001 - prefetching is an optimisation:
            # the error surfaces when luigi checks that task itself
            logger.debug("not prefetching the outputs of %s: %s", task, err)


def prefetch(items: Iterable[Any]) -> None:
    """Looks up the outputs of ``items`` (tasks or targets) in bulk now, so their
    ``exists()`` answers without a request. Other targets are left alone.

    >>> prefetch([])
    """
    from luigi.task import flatten

    from nbank_luigi.target import NbankTarget

    groups: dict[Lookup, set[str]] = {}
    for item in items:
        outputs = [item] if isinstance(item, NbankTarget) else flatten(item.output())
        for target in outputs:
            if isinstance(target, NbankTarget):
                groups.setdefault(target.lookup, set()).add(target.id)
    for lookup, idents in groups.items():
        lookup.refresh(idents)


def refresh(targets: Iterable[Any]) -> dict[Any, bool]:
    """Asks the registry now whether each of ``targets`` exists (one bulk request
    per registry); returns ``{target: exists}``."""
    groups: dict[Lookup, list[Any]] = {}
    for target in targets:
        groups.setdefault(target.lookup, []).append(target)
    out: dict[Any, bool] = {}
    for lookup, group in groups.items():
        found = lookup.refresh(t.id for t in group)
        for t in group:
            loc = found.get(t.id)
            out[t] = loc is not None and loc.path is not None
    return out


def clear_cache() -> None:
    """Forgets every answer and watched task of this process (tests, long runs)."""
    with _lock:
        for lookup in _process_state()["lookups"].values():
            lookup.close()
        _state.update(pid=os.getpid(), lookups={}, tasks=[])
