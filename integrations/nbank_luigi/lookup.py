"""Existence checks in bulk: one registry request answers many ``exists()`` calls.

Luigi checks completeness one task at a time (``Worker.add`` calls
``task.complete()`` for the task, then for each of its dependencies), so a
pipeline of 1000 tasks would ask the registry 1000 times. Instead, lookups go
through the core's shared :class:`~nbank_core.Resolver` of each registry
(:func:`nbank_core.resolver_for`), and every id that is likely to be asked soon
is *expected* there: each target notes its id when it is made, and the outputs of
every :class:`~nbank_luigi.NbankTask` instantiated so far are made (so noted)
just before a lookup. The first ``exists()`` that the resolver cannot answer from
memory then brings them all, in one bulk request per 500 ids.

What is remembered, and for how long, is the core's one policy: a resource found
is trusted for a few seconds; a "missing" is not kept, except that an id fetched
ahead answers from that fetch for a second (luigi asks about a missing output
twice in a row). Registry errors propagate.
``[nbank] prefetch = false`` turns the expecting off (one request per check).

Datatypes are looked up here too (:func:`datatype`, :func:`dtype_for_suffix`):
every output of a schedule asks about the same few, so an answer (a datatype,
or "none has that extension") is kept for a few seconds.

This module knows targets only by their ``id`` and ``settings`` (see
:class:`NbankResourceLike`), so it imports nothing else of ``nbank_luigi`` but
its configuration.

>>> clear_cache()
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import luigi
from luigi.task import flatten

from nbank_core import (
    ConfigError,
    Located,
    NotFound,
    Resolver,
    Settings,
    canonical_url,
    clear_shared,
    resolver_for,
)
from nbank_core import dtype_for_suffix as core_dtype_for_suffix
from nbank_luigi.config import setting

__all__ = [
    "NbankResourceLike",
    "clear_cache",
    "datatype",
    "dtype_for_suffix",
    "expect_again",
    "locate",
    "note",
    "prefetch",
    "refresh",
    "resolver",
    "watch_task",
]

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_watched: dict[str, Any] = {"pid": None, "tasks": []}
DATATYPE_TTL = 10.0  # seconds an answer about datatypes is kept
_datatypes: dict[tuple[str, str, str], tuple[float, Any, type[Exception] | None]] = {}


@runtime_checkable
class NbankResourceLike(Protocol):
    """What a lookup needs of a target: its id and its registry's settings."""

    id: str
    settings: Settings


def resolver(settings: Settings) -> Resolver:
    """The resolver this process shares for the registry of ``settings``."""
    return resolver_for(settings)


def note(target: NbankResourceLike) -> None:
    """Expects ``target``'s id in the next bulk lookup of its registry (called
    when a target is made; nothing is done with ``[nbank] prefetch = false``)."""
    if setting("prefetch"):
        resolver(target.settings).expect([target.id])


def locate(target: NbankResourceLike) -> Located | None:
    """What the registry says of ``target``: None if it is not registered;
    ``path`` is None if no archive mounted here holds it. Registry errors
    propagate."""
    _expand_watched_tasks()
    return resolver(target.settings).locate_many([target.id]).get(target.id)


def refresh(
    targets: Iterable[NbankResourceLike], *, ahead: bool = False
) -> dict[Any, bool]:
    """Asks the registry now whether each of ``targets`` exists (registered and
    in an archive here), one bulk request per registry; returns
    ``{target: exists}``. With ``ahead``, each one found missing also answers
    its next question from this request (luigi asks again at once)."""
    out: dict[Any, bool] = {}
    for res, group in _by_resolver(targets).items():
        found = res.locate_many([t.id for t in group], fresh=True, keep_misses=ahead)
        for t in group:
            loc = found.get(t.id)
            out[t] = loc is not None and loc.path is not None
    return out


def prefetch(items: Iterable[Any]) -> None:
    """Looks up the outputs of ``items`` (tasks or targets) in bulk now, so that
    their ``exists()`` answers without a request (a found one for a few seconds;
    a missing one for a second). Other targets are left alone.

    >>> prefetch([])
    """
    targets: list[NbankResourceLike] = []
    for item in items:
        outputs = item.output() if isinstance(item, luigi.Task) else [item]
        targets.extend(t for t in flatten(outputs) if isinstance(t, NbankResourceLike))
    for res, group in _by_resolver(targets).items():
        names = list(dict.fromkeys(t.id for t in group))
        for name in names:
            res.forget(name)  # asked for now, whatever is remembered
        res.expect(names[1:])  # fetched with the first, missing ones kept 1 s
        res.locate_many(names[:1], fresh=True)


def datatype(settings: Settings, name: str) -> dict[str, Any]:
    """The registered datatype ``name``; NotFound if there is none."""
    return _kept(settings, "name", name, lambda reg: reg.get_datatype(name))


def dtype_for_suffix(settings: Settings, suffix: str) -> str:
    """The one datatype whose extension is ``suffix`` (the core's
    :func:`nbank_core.dtype_for_suffix`); its ConfigError when none or several
    have it."""
    return _kept(
        settings,
        "suffix",
        suffix.lstrip(".").lower(),
        lambda reg: core_dtype_for_suffix(suffix, registry=reg),
    )


def _kept(settings: Settings, kind: str, key: str, ask: Any) -> Any:
    """``ask(registry)``, or its answer (a value, a ConfigError or NotFound) kept
    for :data:`DATATYPE_TTL` seconds; other errors (registry down) are not kept."""
    where = (canonical_url(settings.registry), kind, key)
    now = time.monotonic()
    with _lock:
        kept = _datatypes.get(where)
    if kept is not None and now - kept[0] < DATATYPE_TTL:
        when, value, error = kept
        if error is not None:
            raise error(value)
        return value
    try:
        value = ask(resolver(settings).registry)
    except (ConfigError, NotFound) as err:
        with _lock:
            _datatypes[where] = (now, str(err), type(err))
        raise
    with _lock:
        _datatypes[where] = (now, value, None)
    return value


def expect_again(targets: Iterable[NbankResourceLike]) -> None:
    """Expects ``targets`` in the next bulk lookup of their registries (used for
    outputs found missing: luigi asks about those again soon)."""
    for res, group in _by_resolver(targets).items():
        res.expect(t.id for t in group)


def _by_resolver(
    targets: Iterable[NbankResourceLike],
) -> dict[Resolver, list[NbankResourceLike]]:
    groups: dict[Resolver, list[NbankResourceLike]] = {}
    for t in targets:
        groups.setdefault(resolver(t.settings), []).append(t)
    return groups


# -- tasks whose outputs are likely to be checked soon -----------------------------
def _tasks() -> list[Any]:
    """The watched tasks of this process; a forked child starts afresh."""
    if _watched["pid"] != os.getpid():
        _watched.update(pid=os.getpid(), tasks=[])
    return _watched["tasks"]


def watch_task(task: Any) -> None:
    """Registers a task whose outputs are likely to be checked soon (called when
    an :class:`~nbank_luigi.NbankTask` is instantiated)."""
    with _lock:
        _tasks().append(weakref.ref(task))


def _expand_watched_tasks() -> None:
    """Makes the outputs of every watched task (each target made expects its id),
    then forgets the tasks; with ``[nbank] prefetch = false`` just forgets them."""
    with _lock:
        refs = list(_tasks())
        _watched["tasks"] = []
    if not refs or not setting("prefetch"):
        return
    for ref in refs:
        task = ref()
        if task is None:
            continue
        try:
            flatten(task.output())
        except Exception as err:  # noqa: BLE001 - prefetching is an optimisation:
            # the error surfaces when luigi checks that task itself
            logger.debug("not prefetching the outputs of %s: %s", task, err)


def clear_cache() -> None:
    """Forgets every answer of this process (the shared resolvers, whichever
    front end filled them) and every watched task (tests, long runs)."""
    with _lock:
        _watched.update(pid=os.getpid(), tasks=[])
        _datatypes.clear()
    clear_shared()
