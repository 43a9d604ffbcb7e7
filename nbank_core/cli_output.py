"""What every ``nbank`` command shares: stdout and stderr lines, the usage error,
and ``-k KEY=VALUE`` read as neurobank 0.13 reads it.

>>> _kv("site=3"), _kv("ok=True"), _kv("name=st32")
(('site', 3), ('ok', True), ('name', 'st32'))
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["PROG", "UsageError"]

PROG = "nbank"


class UsageError(Exception):
    """A command line that cannot be carried out as written (exit 2)."""


#: ``-k`` values that neurobank 0.13 reads as Python literals
_ALIASES: dict[str, Any] = {"True": True, "False": False, "None": None}


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _kv(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: the value as JSON if it parses (True, False and None as
    their Python meanings), else a string; a broken JSON list or object, NaN or
    Infinity, or a key that is a record field is refused."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key in ("experimenter", "animal"):
        raise argparse.ArgumentTypeError(f"{key} is not metadata; use --{key}")
    if value in _ALIASES:
        return key, _ALIASES[value]
    try:
        return key, json.loads(value, parse_constant=_not_json)
    except ValueError:
        if value.lstrip().startswith(("[", "{")):
            raise argparse.ArgumentTypeError(
                f"{key}: {value} is not a valid JSON list or object"
            ) from None
        return key, value


class _KeyValues(argparse.Action):
    """Collects repeated ``-k KEY=VALUE`` into one dict (a later KEY wins)."""

    def __call__(self, parser: Any, namespace: Any, value: Any, opt: Any = None):
        setattr(
            namespace, self.dest, {**getattr(namespace, self.dest), value[0]: value[1]}
        )


def _metadata(c: argparse.ArgumentParser, flag: str, dest: str, text: str) -> None:
    c.add_argument(
        flag,
        dest=dest,
        type=_kv,
        action=_KeyValues,
        default={},
        metavar="KEY=VALUE",
        help=f"{text}; VALUE is read as JSON if it parses, else as a string",
    )


def _userpwd(text: str) -> str:
    if ":" not in text:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not of the form username:password"
        )
    return text


def _out(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)


def _err(text: str) -> None:
    """One diagnostic line, whatever the message holds (file names may hold
    newlines or control characters), and never a password of a URL."""
    from nbank_core.redact import mask_text

    text = mask_text(text)
    safe = "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)
    sys.stderr.write(f"{PROG}: {safe}\n")
