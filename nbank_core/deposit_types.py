"""The records of a deposit: what to deposit (:class:`DepositItem`), how
(:class:`DepositOptions`), what happened (:class:`DepositResult`), and the state
of one item while the batch works on it.

>>> DepositResult(source="a.txt", status="exists").ok
True
>>> item_name(DepositItem(Path("/data/st32_1.wav")))
'st32_1'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbank_core import hashing, ids
from nbank_core.errors import NbankError, PolicyError

__all__ = [
    "DepositItem",
    "DepositOptions",
    "DepositResult",
    "Stop",
    "Work",
    "check_name_length",
    "dangling",
    "is_ours",
    "item_name",
    "refuse_repeats",
    "valid",
]


@dataclasses.dataclass(frozen=True)
class DepositItem:
    """A file (or directory) to deposit, under ``name`` (default: its stem)."""

    source: Path
    name: str | None = None
    metadata: Mapping[str, Any] | None = None


@dataclasses.dataclass
class DepositResult:
    """What happened to one item. ``status`` is ``deposited``, ``exists`` (the same
    content was already archived under that id), ``dry-run``, ``failed`` or
    ``skipped`` (not attempted: the batch was stopped)."""

    source: Path
    id: str | None = None
    path: Path | None = None
    sha1: str | None = None
    status: str = "failed"
    error: str | None = None
    exception: BaseException | None = dataclasses.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "skipped")

    def as_dict(self) -> dict[str, Any]:
        d = {"source": str(self.source), "id": self.id, "status": self.status}
        if self.path is not None:
            d["path"] = str(self.path)
        if self.sha1 is not None:
            d["sha1"] = self.sha1
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclasses.dataclass(frozen=True)
class DepositOptions:
    """How a batch deposits (see :func:`deposit` for each field)."""

    dtype: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hash: bool = False
    auto_id: bool = False
    dry_run: bool = False
    keep_source: bool = False
    exist_ok: bool = False
    derived: bool = False
    link_source: bool = False
    atomic: bool = False


@dataclasses.dataclass
class Work:
    item: DepositItem
    result: DepositResult
    is_dir: bool = False
    suffix: str = ""
    staged: Path | None = None
    moved: bool = False  # the source itself was renamed into staging
    linked: bool = False  # staged by a hard link; the caller removes the source
    saved_mode: tuple[int, int] | None = None
    adopted: bool = False  # its record exists already, with this content, nowhere
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) when it was hashed


class Stop(Exception):
    """The batch was stopped before this item began."""


def refuse_repeats(works: list[Work]) -> None:
    """A source listed twice is deposited once; the repeat fails, saying so."""
    seen: dict[str, Path] = {}
    for w in works:
        key = os.path.realpath(w.item.source)
        if key in seen:
            w.result.error = (
                f"'{w.item.source}' is listed twice (as '{seen[key]}'); it is "
                "deposited once"
            )
            w.result.exception = PolicyError(w.result.error)
        else:
            seen[key] = Path(w.item.source)


def is_ours(
    record: Mapping[str, Any],
    sha1: str | None,
    dtype: str,
    metadata: Mapping[str, Any],
    archive: str,
) -> bool:
    """True if ``record`` is the one this deposit asked for (a write the server
    committed although its answer was lost): same content, or, with no hash, the
    same datatype, metadata and archive."""
    known = hashing.record_sha1(record)
    if sha1 is not None or known is not None:
        return sha1 is not None and known == sha1
    if record.get("dtype") != dtype or archive not in (record.get("locations") or ()):
        return False
    stored = dict(record.get("metadata") or {})
    wanted = {k: v for k, v in metadata.items() if k not in ("experimenter", "animal")}
    return stored == wanted


def check_name_length(name: str, suffix: str) -> None:
    if len((name + suffix).encode()) > 255:
        raise PolicyError(
            f"'{name[:40]}...{suffix}' is too long for a file name in the archive "
            f"({len((name + suffix).encode())} bytes, at most 255): use a shorter id"
        )


def item_name(item: DepositItem) -> str:
    """The id an item asks for: its name if given (even an empty one, which is then
    refused), else the file's stem."""
    return item.name if item.name is not None else stem(item.source)


def stem(path: Path) -> str:
    p = Path(path)
    return p.stem if p.suffix else p.name


def dangling(record: Mapping[str, Any], sha1: str | None) -> bool:
    """True for a record of this very content located nowhere: a registration cut
    short (django-neurobank creates a resource, then its location, in two steps),
    which depositing the file again completes instead of failing on the name."""
    return (
        sha1 is not None
        and hashing.record_sha1(record) == sha1
        and "locations" in record
        and not record["locations"]
    )


def valid(name: str) -> bool:
    try:
        ids.validate_id(name)
    except NbankError:
        return False
    return True
