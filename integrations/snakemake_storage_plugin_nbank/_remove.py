"""What Snakemake's removals and touches do to archived outputs.

Resources are immutable. Snakemake removes a job's outputs before re-running it
(``--forcerun``, a changed rule, ``--rerun-incomplete``, a job with an output
missing), after a failed job, for ``temp()`` outputs and for
``--delete-all-output``. Unless the setting ``allow_remove`` is ``yes``, the plugin
removes nothing: it logs that the archived resource is kept, and the job's result
is accepted at store time if it has the same content (different content is an
error that changes nothing). With ``allow_remove=yes`` an output is removed, only
from the archive the workflow deposits into, through ``nbank_core.withdraw``
(record first, then file).

Accepting an archived resource again (the same content stored by a rerun, or
``--touch``) is recorded in the working directory, under Snakemake's local
storage prefix, as the time it was accepted: the output's time for Snakemake is
then the later of that and the archived file's, so a job whose output was
accepted is not run again because its inputs are newer. The archived file itself
is never touched.

>>> check_allowed("maybe")
Traceback (most recent call last):
...
nbank_core.errors.ConfigError: allow_remove must be 'yes' or 'no', not 'maybe'
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from nbank_core import ConfigError

__all__ = ["Accepted", "check_allowed", "unlink_if_shared"]


def check_allowed(value: str | None) -> bool:
    """True for ``yes``, False for ``no`` or unset; anything else is an error."""
    text = (value or "no").strip().lower()
    if text not in ("yes", "no"):
        raise ConfigError(f"allow_remove must be 'yes' or 'no', not {value!r}")
    return text == "yes"


class Accepted:
    """When this working directory last accepted an archived resource as a job's
    output: one empty file per id (ids never start with ``.``) in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mark(self, ident: str) -> None:
        """Records that ``ident`` was accepted now."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ident
        path.touch()
        os.utime(path)

    def time(self, ident: str) -> float | None:
        """When ``ident`` was last accepted here, or None."""
        try:
            return os.stat(self.root / ident).st_mtime
        except FileNotFoundError:
            return None


def unlink_if_shared(local: Path, archived: Path | None) -> None:
    """Removes the local copy ``local`` if it is the archived file itself (a hard
    link left by a deposit that staged it by linking), so a job writing its output
    again can never write into the archive."""
    if archived is None:
        return
    with contextlib.suppress(OSError):
        if os.path.samefile(local, archived) and not os.path.islink(local):
            os.unlink(local)
