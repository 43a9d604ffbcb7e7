"""Removing a deposited output, for users who explicitly allow it.

Resources are immutable, so the plugin refuses to remove anything unless the
setting ``allow_remove`` is ``yes``. Then an output is removed only from the archive
the workflow deposits into, through ``nbank_core.withdraw`` (record first, then
file).

>>> check_allowed("maybe")
Traceback (most recent call last):
...
nbank_core.errors.ConfigError: allow_remove must be 'yes' or 'no', not 'maybe'
"""

from __future__ import annotations

from nbank_core import ConfigError

__all__ = ["check_allowed"]


def check_allowed(value: str | None) -> bool:
    """True for ``yes``, False for ``no`` or unset; anything else is an error."""
    text = (value or "no").strip().lower()
    if text not in ("yes", "no"):
        raise ConfigError(f"allow_remove must be 'yes' or 'no', not {value!r}")
    return text == "yes"
