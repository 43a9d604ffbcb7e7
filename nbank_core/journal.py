"""The staging area's names and journal: what every entry of ``staging/`` is for,
and where it came from.

An entry in ``staging/`` is named ``<id>~<token><ext>`` (``auto~...`` before the
registry names it; ``long~...`` when the id is too long for a file name), so
``nbank check`` can tell which resource an interrupted deposit was for. Before a
deposit moves a source into ``staging/``, it writes a journal in
``staging/.journal/`` (one small JSON file per batch of items, fsynced) that
records, for each staged name, the id, the source's original path and how it was
staged (``moved``: the source itself was renamed in, so ``check --fix`` must put
it back if the deposit did not finish; ``copied``: the source was left where it
was; ``output``: written in place by an engine), and the host and pid of the
process at work, so ``check --fix`` leaves alone what a running process holds.

>>> name = staged_name("st32_1", ".wav")
>>> parse_staged_name(name)
('st32_1', '.wav')
>>> parse_staged_name(staged_name("x" * 250, ".wav"))
(None, '.wav')
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nbank_core.fsutil import atomic_write_text, fsync_dir

__all__ = [
    "JOURNAL_DIR",
    "Journal",
    "STAGED_MARK",
    "parse_staged_name",
    "prune_journals",
    "prune_leftovers",
    "read_journals",
    "staged_name",
    "writer_alive",
]

STAGED_MARK = "~"  # never in an id: separates the id from the token
JOURNAL_DIR = ".journal"
NAME_MAX = 255  # bytes in one file name on the filesystems archives live on
_LONG = "long"
_AUTO = "auto"


def staged_name(name: str | None, suffix: str) -> str:
    """The name of a deposit's entry in ``staging/``: ``<id>~<token><suffix>``,
    always short enough for a file name (a long id is recorded in the journal
    instead, a long suffix dropped: the deposit keeps its own copy of both)."""
    token = uuid.uuid4().hex[:12]
    if len(suffix.encode()) > 32:
        suffix = ""
    full = f"{name or _AUTO}{STAGED_MARK}{token}{suffix}"
    if len(full.encode()) <= NAME_MAX:
        return full
    return f"{_LONG}{STAGED_MARK}{token}{suffix}"


def parse_staged_name(entry: str) -> tuple[str | None, str]:
    """Returns ``(id or None, suffix)`` from a staging entry's name."""
    name, mark, rest = entry.partition(STAGED_MARK)
    dot = rest.find(".")
    suffix = rest[dot:] if mark and dot >= 0 else ""
    if not mark or name in (_AUTO, _LONG):
        return None, suffix
    return name, suffix


class Journal:
    """The journal of one batch: ``add`` entries, ``write`` (durably) before the
    sources are moved, ``remove`` once the batch is over."""

    def __init__(self, staging: Path) -> None:
        self.dir = staging / JOURNAL_DIR
        self.path = self.dir / f"{uuid.uuid4().hex}.json"
        self.entries: dict[str, dict[str, Any]] = {}
        self.written = False

    def add(self, staged: Path, ident: str | None, source: Path, how: str) -> None:
        """Records that ``staged`` holds ``source`` (``how``: moved, copied or
        output) for the id ``ident``."""
        entry: dict[str, Any] = {"id": ident, "source": os.path.abspath(source)}
        entry.update(how=how, host=socket.gethostname(), pid=os.getpid())
        self.entries[staged.name] = entry

    def write(self, durable: bool = True) -> None:
        """Writes the journal and makes it durable (``durable=False``: when every
        source stays in place, so a journal lost in a power failure loses no
        file, only the note that a staged name is a spare)."""
        if not self.entries:
            return
        text = json.dumps(self.entries) + "\n"
        for attempt in (1, 2):  # another batch may remove the empty directory
            self.dir.mkdir(exist_ok=True)
            try:
                atomic_write_text(
                    self.path, text, mode=0o644, overwrite=True, durable=durable
                )
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        self.written = True

    def remove(self, durable: bool = True) -> None:
        """Deletes the journal (the batch's staged entries are settled); with
        ``durable``, makes that and the removal of the staged names durable."""
        if self.written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):
                self.dir.rmdir()  # only if no other batch has a journal there
            if durable:
                with contextlib.suppress(OSError):
                    fsync_dir(self.dir.parent)
            self.written = False


def read_journals(staging: Path) -> tuple[dict[str, dict[str, Any]], list[Path]]:
    """Returns ``({staged name: entry}, [journal files])`` of ``staging/``; an
    unreadable journal is skipped (its entries are then handled as unknown)."""
    entries: dict[str, dict[str, Any]] = {}
    files: list[Path] = []
    try:
        names = sorted(os.listdir(staging / JOURNAL_DIR))
    except (FileNotFoundError, NotADirectoryError):
        return entries, files
    for name in names:
        path = staging / JOURNAL_DIR / name
        if not name.endswith(".json"):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, Mapping):
            files.append(path)
            entries.update(
                (k, dict(v)) for k, v in data.items() if isinstance(v, Mapping)
            )
    return entries, files


def writer_alive(entry: Mapping[str, Any]) -> bool:
    """True if the entry was written by a process on this host that still runs."""
    if entry.get("host") != socket.gethostname():
        return False
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_journals(files: Iterable[Path], live: set[str]) -> None:
    """Removes journal files none of whose entries is in ``live`` (staged names
    still present), and what a journal write cut short left (its temp file, or
    an empty journal directory)."""
    files = list(files)
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, Mapping) and not (set(data) & live):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # once its last journal is gone


def prune_leftovers(staging: Path) -> None:
    """Removes the temp files of journal writes cut short (``.<name>.*``, never
    read as journals) and the journal directory once it is empty."""
    directory = staging / JOURNAL_DIR
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if name.startswith("."):
            with contextlib.suppress(OSError):
                os.unlink(directory / name)
    with contextlib.suppress(OSError):
        directory.rmdir()
