"""Queries of the ``nbank`` storage plugin: ``nbank://ID``, ``nbank:ID`` or a bare
``ID``, each optionally followed by ``.ext``, and each possibly holding
``{wildcards}``.

An id never contains ``.``, so ``nbank://u1_spikes.csv`` is the id ``u1_spikes``
with the extension ``.csv``: the extension names the local file the job sees and,
for outputs, the suffix of the archived file. Every query is normalised to
``nbank://ID[.ext]``.

>>> normalise("nbank:{unit}_spikes.csv")
'nbank://{unit}_spikes.csv'
>>> parse("st32_1_2_1.wav")
('st32_1_2_1', '.wav')
>>> invalid_reason("nbank://a/b") is not None
True
"""

from __future__ import annotations

import re

from snakemake_interface_storage_plugins.io import WILDCARD_REGEX

from nbank_core import InvalidIdentifier, validate_id

__all__ = ["SCHEME", "body", "has_wildcards", "invalid_reason", "normalise", "parse"]

SCHEME = "nbank://"
_PREFIXES = ("nbank://", "nbank:")
_EXT = re.compile(r"[A-Za-z0-9]{1,16}")
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def body(query: str) -> str:
    """The query without its ``nbank:`` or ``nbank://`` prefix and trailing ``/``."""
    text = query.strip()
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text.rstrip("/")


def has_wildcards(query: str) -> bool:
    """True if ``query`` still holds ``{wildcards}``."""
    return WILDCARD_REGEX.search(query) is not None


def invalid_reason(query: object) -> str | None:
    """Why ``query`` is not an nbank query, or None if it is one (wildcards are
    accepted where an id or extension may stand)."""
    if not isinstance(query, str):
        return f"{query!r} is not a string"
    text = query.strip()
    if not text.startswith(_PREFIXES) and _OTHER_SCHEME.match(text):
        return "not an nbank query: expected nbank://ID, nbank:ID or a bare ID"
    # a wildcard stands for a valid id part; show it by its name in messages
    masked = WILDCARD_REGEX.sub(lambda m: m.group("name").replace(".", "_"), body(text))
    ident, dot, ext = masked.partition(".")
    try:
        validate_id(ident)
    except InvalidIdentifier as err:
        return str(err)
    if dot and _EXT.fullmatch(ext) is None:
        return (
            f"invalid extension {'.' + ext!r}: after the id, one '.ext' of 1-16 "
            "letters or digits may follow (ids themselves cannot contain '.')"
        )
    return None


def normalise(query: str) -> str:
    """Returns ``nbank://ID[.ext]`` for a valid query; anything else unchanged (this
    never raises: Snakemake also passes invalid queries through it)."""
    try:
        if invalid_reason(query) is None:
            return SCHEME + body(query)
    except (TypeError, AttributeError, re.error):
        pass
    return query


def parse(query: str) -> tuple[str, str]:
    """Returns ``(id, ext)`` of a query without wildcards; ``ext`` is ``""`` or
    starts with ``.``. Raises InvalidIdentifier naming the problem."""
    reason = invalid_reason(query)
    if reason is not None:
        raise InvalidIdentifier(f"invalid nbank query {query!r}: {reason}")
    ident, dot, ext = body(query).partition(".")
    return ident, dot + ext
