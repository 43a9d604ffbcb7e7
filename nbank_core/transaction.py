"""The one deposit transaction (module named apart from the `deposit` function it
defines, so `nbank_core.deposit` is always the function): validate, hash, stage,
register, publish, finish.

Every caller (the CLI, Snakemake, luigi, fsspec) deposits through :func:`deposit`.
The order is chosen so that nothing is ever lost and no source ever shares its
inode with an archived file:

1. validate the archive's policy, the ids and the sources (never a file inside an
   archive); check names already taken (one bulk registry call for the batch;
   with a server, only for sources that are gone, as its POST reports the rest);
2. hash (in parallel across files);
3. write the batch's journal in ``staging/.journal/`` (durably), then stage each
   item inside ``staging/``: the source is renamed in on the same filesystem
   (so it is nowhere else), otherwise copied, fsynced and re-hashed (the source
   stays);
4. register; if that fails, the staged item is put back (or the copy removed);
5. publish with a no-clobber link to ``resources/<id[:2]>/<id><ext>`` after setting
   the policy's group and mode; if that fails, the registry record is withdrawn
   and the item put back;
6. fsync the shard directories, remove the staged names, the copied sources (a
   move without ``keep_source`` across filesystems) and the journal.

Each step pushes its undo on a stack, so a failure rolls back exactly the steps
already taken. A crash at any point leaves the source in place or in ``staging/``
with a journal saying where it belongs (``nbank check --fix`` puts it back), or
the archived file complete under its final name with its record. A stop request
(``stop``, set by the command on SIGINT or SIGTERM) lets the items in flight
finish and skips the rest; so do an authentication failure and a few registry
failures in a row.

>>> import tempfile, pathlib
>>> from nbank_core import init_archive
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> arch = init_archive(tmp / "arch", registry="sqlite://" + str(tmp / "r.sqlite"))
>>> from nbank_core.registry import open_registry
>>> with open_registry(arch.registry) as reg:
...     _ = reg.add_datatype("txt", "text/plain")
>>> _ = (tmp / "note1.txt").write_text("hello")
>>> [r.status for r in deposit(arch.path, [tmp / "note1.txt"], dtype="txt")]
['deposited']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from nbank_core.archive import ArchiveConfig, read_config
from nbank_core.deposit_batch import Batch
from nbank_core.deposit_files import rmtree_writable
from nbank_core.deposit_types import DepositItem, DepositOptions, DepositResult
from nbank_core.errors import PolicyError
from nbank_core.fsutil import fsync_dir
from nbank_core.journal import STAGED_MARK, parse_staged_name, staged_name
from nbank_core.registry import Registry, open_registry

__all__ = [
    "STAGED_MARK",
    "DepositItem",
    "DepositOptions",
    "DepositResult",
    "deposit",
    "parse_staged_name",
    "staged_name",
    "withdraw",
]


def deposit(
    archive: str | os.PathLike[str] | ArchiveConfig,
    files: Iterable[str | os.PathLike[str] | DepositItem],
    *,
    dtype: str,
    metadata: Mapping[str, Any] | None = None,
    hash: bool = False,
    auto_id: bool = False,
    registry: Registry | None = None,
    auth: tuple[str, str] | None = None,
    dry_run: bool = False,
    keep_source: bool = False,
    exist_ok: bool = False,
    jobs: int | None = None,
    on_result: Callable[[DepositResult], None] | None = None,
    stop: threading.Event | None = None,
    derived: bool = False,
    link_source: bool = False,
    atomic: bool = False,
) -> list[DepositResult]:
    """Deposits ``files`` into ``archive`` and registers them; returns one result each.

    ``dtype`` must be registered. ``metadata`` is stored with every resource (an
    item's own metadata is merged over it). ``hash`` registers the sha1 even when the
    policy does not require it. ``auto_id`` (or the policy) lets the registry name
    each resource (UUIDs under ``auto_id_type: uuid``). ``registry`` defaults to
    the archive's. ``keep_source`` copies instead of moving. The same content
    already archived under the same id is ``exists``, a success, never a second
    record; ``exist_ok`` also hashes files the policy would not, so engines that
    store an output twice always get that answer. A failed item does not stop the
    batch: its result says why; an authentication failure, a few registry
    failures in a row or ``stop`` being set skip the items not yet begun. Raises
    only for problems with the whole batch (archive, registry or dtype unusable).

    ``derived`` is for outputs an engine made: the registry's ``sha1`` field is
    unique and meant for sources (two empty spike lists could not both be
    registered), so a derived output's hash is registered in its metadata under
    ``content_sha1`` instead, where ``check``, ``verify`` and reruns read it.
    ``link_source`` stages a source on the archive's filesystem by a hard link and
    leaves it in place, for an engine's scratch copy that the engine removes
    itself right after (so nothing is copied).

    ``atomic`` deposits all or nothing (a job's outputs): if any item fails, the
    items this call deposited are withdrawn again (record, then file) and
    reported failed; it needs ``keep_source`` or ``link_source``, so every source
    is still in place then.
    """
    if atomic and not (keep_source or link_source):
        raise ValueError("atomic deposits keep their sources: pass keep_source")
    cfg = archive if isinstance(archive, ArchiveConfig) else read_config(archive)
    options = DepositOptions(
        dtype=dtype,
        metadata=dict(metadata or {}),
        hash=hash,
        auto_id=auto_id,
        dry_run=dry_run,
        keep_source=keep_source,
        exist_ok=exist_ok,
        derived=derived,
        link_source=link_source,
        atomic=atomic,
    )
    own = registry is None
    reg = registry if registry is not None else open_registry(cfg.registry, auth=auth)
    try:
        batch = Batch(cfg, reg, options, on_result, stop or threading.Event())
        return batch.run(files, jobs)
    finally:
        if own:
            reg.close()


def withdraw(cfg: ArchiveConfig, registry: Registry, located: Any) -> Path:
    """Undoes a deposit that its owner explicitly allows to be undone: deletes the
    record of ``located`` (a :class:`~nbank_core.resolve.Located`), then its file
    in the archive ``cfg``; returns the path removed. Raises PolicyError, removing
    nothing, if the file lives outside that archive."""
    path = located.require_path()
    if not Path(os.path.abspath(path)).is_relative_to(cfg.resources_dir.resolve()):
        raise PolicyError(
            f"'{located.id}' is archived at '{path}', outside the archive "
            f"'{cfg.path}'; not removing it"
        )
    registry.delete_resource(located.id)  # the registry says what exists: first
    if path.is_dir() and not path.is_symlink():
        rmtree_writable(path)
    else:
        path.unlink()
    fsync_dir(path.parent)
    return path
