"""Removing a deposited output, for users who explicitly allow it.

Resources are immutable, so the plugin refuses to remove anything unless the
setting ``allow_remove`` is ``yes``. Then an output is removed only from the archive
the workflow deposits into: its registry record is deleted first (the registry says
what exists), then its file. nbank_core has no removal in its public API, so this
module is the one place the plugin deletes a record and an archived file.

>>> check_allowed("maybe")
Traceback (most recent call last):
...
nbank_core.errors.ConfigError: allow_remove must be 'yes' or 'no', not 'maybe'
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from nbank_core import ArchiveConfig, ConfigError, Located, PolicyError, Registry

__all__ = ["check_allowed", "withdraw"]


def check_allowed(value: str | None) -> bool:
    """True for ``yes``, False for ``no`` or unset; anything else is an error."""
    text = (value or "no").strip().lower()
    if text not in ("yes", "no"):
        raise ConfigError(f"allow_remove must be 'yes' or 'no', not {value!r}")
    return text == "yes"


def withdraw(registry: Registry, cfg: ArchiveConfig, located: Located) -> Path:
    """Deletes ``located``'s record and its file in the archive ``cfg``; returns the
    path removed. Raises PolicyError if the resource lives in another archive."""
    path = located.require_path()
    root = cfg.resources_dir.resolve()
    if not Path(os.path.abspath(path)).is_relative_to(root):
        raise PolicyError(
            f"'{located.id}' is archived at '{path}', outside the archive '{cfg.path}' "
            "this workflow deposits into; not removing it"
        )
    registry.delete_resource(located.id)
    if path.is_dir() and not path.is_symlink():
        for d, _dirs, _files in os.walk(path):
            os.chmod(d, stat.S_IMODE(os.lstat(d).st_mode) | stat.S_IRWXU)
        shutil.rmtree(path)
    else:
        path.unlink()
    return path
