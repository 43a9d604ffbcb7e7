"""Small helpers of the plugin: error translation at the edge, settings parsing
and file times.

>>> past(1e12) <= time.time()
True
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError

from nbank_core import ConfigError, NbankError

__all__ = ["edge", "is_dir", "json_object", "past", "setting", "stat_or_none"]


@contextlib.contextmanager
def edge(query: str) -> Iterator[None]:
    """Turns nbank's errors into Snakemake's, keeping the one-line message."""
    try:
        yield
    except NbankError as err:
        raise WorkflowError(f"{query}: {err}") from err


def setting(make: Callable[[], Any]) -> Any:
    """Evaluates a setting, turning a bad value into a WorkflowError."""
    try:
        return make()
    except NbankError as err:
        raise WorkflowError(f"nbank storage settings: {err}") from err


def json_object(text: str | None) -> dict[str, Any]:
    """Parses the ``metadata`` setting: a JSON object, or nothing."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"metadata must be a JSON object: {err}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"metadata must be a JSON object, not {text!r}")
    return value


def stat_or_none(path: Path) -> os.stat_result | None:
    """``os.stat(path)``, or None if the file is gone."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def is_dir(st: os.stat_result) -> bool:
    """True if ``st`` describes a directory."""
    return stat.S_ISDIR(st.st_mode)


def past(mtime: float) -> float:
    """An mtime no later than now: Snakemake refuses times in the future."""
    return min(mtime, time.time())
