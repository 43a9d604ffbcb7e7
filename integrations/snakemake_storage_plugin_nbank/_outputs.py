"""Depositing a job's outputs: their datatypes, all of them at once, and how.

- **Datatype.** The ``dtype`` setting names the datatype of every output; without
  it, an output's ``.ext`` names it when exactly one registered datatype has that
  extension (:func:`nbank_core.dtype_for_suffix`). Either is checked for every
  output of the DAG the first time Snakemake asks about it (while it builds the
  DAG), so a missing or ambiguous datatype stops the workflow before any job runs,
  with the core's message.
- **All or nothing.** When Snakemake stores the first output of a job, every
  ``nbank`` output of that job is deposited in one atomic batch (the job is found
  in the DAG as for provenance); the other outputs' store calls answer from that
  batch's result. Outputs of different datatypes (or kept and linked outputs)
  go in one batch each; if a later batch fails, what the earlier ones deposited is
  withdrawn again, so a job never stays half archived.
- **Identical outputs.** Outputs are deposited as derived: their content hash is
  kept in the metadata (``content_sha1``), not in the registry's unique ``sha1``
  field, so two outputs with the same bytes under different ids are both
  deposited. The same content again under the same id is success; different
  content is one error that changes nothing.
- **No copy.** An output whose local copy Snakemake deletes after storing it
  (the default) is staged by a hard link; one it keeps (``keep_local=True``,
  ``--keep-storage-local-copies``) is copied (a reflink where the filesystem has
  them), so the local copy never shares its file with the archive.

>>> _stamp(Path("/nonexistent")) is None
True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snakemake_interface_common.exceptions import WorkflowError

from nbank_core import (
    DepositItem,
    DepositResult,
    NbankError,
    deposit,
    dtype_for_suffix,
    withdraw,
)

from ._provenance import workflow_of_process
from ._support import edge

if TYPE_CHECKING:
    from . import StorageObject, StorageProvider

__all__ = ["Outputs", "stored_objects"]

_NOT_STORED = ("pipe", "service", "nodelocal")


def stored_objects(files: Iterable[Any], provider: Any) -> list[Any]:
    """The storage objects of ``provider`` among a job's ``files`` that Snakemake
    stores (as its ``handle_storage`` chooses them)."""
    found = []
    for f in files:
        if not getattr(f, "is_storage", False):
            continue
        obj = f.storage_object
        flags = getattr(f, "flags", {}) or {}
        if obj.provider is not provider or not obj.retrieve:
            continue
        if any(flag in flags for flag in _NOT_STORED):
            continue
        if getattr(obj, "nbank_id", None) is not None:
            found.append(obj)
    return found


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


class Outputs:
    """The provider's deposits: datatypes of outputs and the batches of jobs."""

    def __init__(self, provider: StorageProvider) -> None:
        self.provider = provider
        self._dtypes: dict[str, str | NbankError] = {}
        self._checked: set[str] = set()
        self._results: dict[str, tuple[tuple[int, int] | None, DepositResult]] = {}
        self._lock = threading.Lock()

    # -- datatypes -------------------------------------------------------------
    def dtype(self, ext: str) -> str:
        """The datatype of an output with extension ``ext``; WorkflowError with the
        core's message if there is none (answers are kept for the run)."""
        explicit = self.provider.settings.dtype if self.provider.settings else None
        key = "" if explicit else ext.lower()
        found = self._dtypes.get(key)
        if found is None:
            try:
                if explicit:
                    self.provider.registry.get_datatype(explicit)
                    found = explicit
                else:
                    found = dtype_for_suffix(ext, registry=self.provider.registry)
            except NbankError as err:
                found = err
            self._dtypes[key] = found
        if isinstance(found, NbankError):
            raise WorkflowError(f"nbank storage: {found}") from found
        return found

    def check(self, objs: Iterable[StorageObject]) -> None:
        """Raises WorkflowError if an output among ``objs`` (an object that a rule
        of the running workflow makes) has no archive or no datatype. Snakemake
        creates the object of each job's output while it builds the DAG, and that
        is when this is asked."""
        for obj in objs:
            if obj.__dict__.get("_checked"):
                continue  # exists() asks at every scheduling round
            key = str(obj.local_path())
            if key in self._checked:
                obj.__dict__["_checked"] = True
                continue
            output, final = self._is_output(key)
            if output:
                self.provider.archive_config()
                self.dtype(obj.ext)
            if final:
                self._checked.add(key)
                obj.__dict__["_checked"] = True

    def _is_output(self, key: str) -> tuple[bool, bool]:
        """Whether a rule of the running workflow makes the local path ``key`` (an
        output, log or benchmark of this provider, whose patterns are local paths
        under the provider's prefix), and whether that answer is final: a no is
        final once Snakemake has read every rule (it has a DAG then)."""
        workflow = workflow_of_process()
        for rule in getattr(workflow, "rules", ()):
            files = [*rule.output, *(rule.log or ())]
            files += [rule.benchmark] if rule.benchmark else []
            for f in files:
                if (
                    getattr(f, "is_storage", False)
                    and f.storage_object.provider is self.provider
                    and f.match(key)
                ):
                    return True, True
        return False, getattr(workflow, "dag", None) is not None

    # -- storing ---------------------------------------------------------------
    def store(self, obj: StorageObject) -> DepositResult:
        """Deposits ``obj``'s job's outputs on its first store call; returns the
        result of ``obj``."""
        key = str(obj.local_path())
        with self._lock:
            done = self._results.pop(key, None)
            if done is not None and done[0] == _stamp(obj.local_path()):
                return done[1]
            siblings = stored_objects(self.provider.jobs.outputs_of(key), self.provider)
            batch = [o for o in siblings if str(o.local_path()) != key]
            batch = [obj, *(o for o in batch if os.path.lexists(o.local_path()))]
            results = self._deposit(batch)
            for o, r in zip(batch[1:], results[1:], strict=True):
                self._results[str(o.local_path())] = (_stamp(o.local_path()), r)
            return results[0]

    def _deposit(self, objs: list[StorageObject]) -> list[DepositResult]:
        provider = self.provider
        cfg = provider.archive_config()
        metadata = {
            **provider.jobs.provenance(objs[0], provider.registry_url),
            **provider.output_metadata,
        }
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, o in enumerate(objs):
            groups.setdefault((self.dtype(o.ext), not o.keep_local), []).append(i)
        results: list[DepositResult | None] = [None] * len(objs)
        for (dtype, link), idx in groups.items():
            if any(r is not None and not r.ok for r in results):
                for i in idx:
                    results[i] = DepositResult(
                        objs[i].local_path(),
                        id=objs[i].nbank_id,
                        status="skipped",
                        error="not attempted: another output of the job failed",
                    )
                continue
            items = [
                DepositItem(source=objs[i].local_path(), name=objs[i].nbank_id)
                for i in idx
            ]
            try:
                with edge(objs[idx[0]].query):
                    got = deposit(
                        cfg,
                        items,
                        dtype=dtype,
                        metadata=metadata,
                        registry=provider.registry,
                        keep_source=not link,
                        link_source=link,
                        exist_ok=True,
                        derived=True,
                        atomic=True,
                    )
            except WorkflowError as err:  # the batch could not begin
                self._withdraw_deposited([r for r in results if r is not None], err)
                raise
            for i, r in zip(idx, got, strict=True):
                results[i] = r
        final = [r for r in results if r is not None]
        failed = next((r for r in final if not r.ok), None)
        if failed is not None:
            self._withdraw_deposited(final, failed.error)
        for r in final:
            if r.ok:
                provider.resolver.remember_deposit(r, cfg)
                if r.status == "exists" and r.id is not None:
                    provider.accepted.mark(r.id)
        return final

    def _withdraw_deposited(self, results: list[DepositResult], why: object) -> None:
        """Withdraws what earlier batches of a job deposited, after a later one
        failed (each batch is all or nothing by itself)."""
        provider, cfg = self.provider, self.provider.archive_config()
        for r in results:
            if r.status != "deposited":
                continue
            try:
                withdraw(
                    cfg, provider.registry, provider.resolver.remember_deposit(r, cfg)
                )
            except (NbankError, OSError) as err:
                r.error = (
                    f"archived, but could not be withdrawn after another output of "
                    f"its job failed ({err}); run 'nbank check --fix {cfg.path}'"
                )
                continue
            provider.resolver.forget(r.id)
            r.status, r.path = "failed", None
            r.error = f"withdrawn: a job's outputs are deposited all or nothing ({why})"
