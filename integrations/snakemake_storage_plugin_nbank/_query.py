"""Queries of the ``nbank`` storage plugin, as Snakemake sees them.

The syntax is nbank's one query syntax (:func:`nbank_core.parse_query`):
``nbank://ID``, ``nbank:ID``, ``nbank:/ID`` or a bare ``ID``, each optionally
followed by ``.ext``.
What is Snakemake's own: a query may still hold ``{wildcards}`` (each stands for a
valid part of an id or extension), a query of another storage provider
(``s3://...``, ``https://...``) is not ours, every query is normalised to
``nbank:/ID[.ext]``, and normalising never raises. That form is the one Snakemake
makes of ``nbank://ID`` where it treats a query as a path (``--cleanup-metadata
nbank://x``, ``--default-storage-prefix nbank:``), and Snakemake keys its metadata
by the query: so those commands find the metadata of an output.

>>> normalise("nbank:{unit}_spikes.csv")
'nbank:/{unit}_spikes.csv'
>>> normalise("nbank://st32_1_2_1.wav")
'nbank:/st32_1_2_1.wav'
>>> parse("st32_1_2_1.wav")
('st32_1_2_1', '.wav')
>>> invalid_reason("nbank://a/b") is not None
True
"""

from __future__ import annotations

import re

from snakemake_interface_storage_plugins.io import WILDCARD_REGEX

from nbank_core import InvalidIdentifier, parse_query, split_prefix

__all__ = [
    "SCHEME",
    "has_wildcards",
    "invalid_reason",
    "local_suffix",
    "normalise",
    "parse",
]

SCHEME = "nbank:/"  # the normal form: see the module docstring
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def has_wildcards(query: str) -> bool:
    """True if ``query`` still holds ``{wildcards}``."""
    return WILDCARD_REGEX.search(query) is not None


def local_suffix(query: str) -> str:
    """Where the job sees the resource, under the local storage prefix: the query
    without its prefix (``ID[.ext]``)."""
    return split_prefix(query)[0]


def invalid_reason(query: object) -> str | None:
    """Why ``query`` is not an nbank query, or None if it is one (wildcards are
    accepted where an id or extension may stand)."""
    if not isinstance(query, str):
        return f"{query!r} is not a string"
    body, prefixed = split_prefix(query)
    if not prefixed and _OTHER_SCHEME.match(body):
        return "not an nbank query: expected nbank://ID, nbank:ID or a bare ID"
    # a wildcard stands for a valid id part; show it by its name in messages
    masked = WILDCARD_REGEX.sub(lambda m: m.group("name").replace(".", "_"), query)
    try:
        parse_query(masked)
    except InvalidIdentifier as err:
        return str(err)
    return None


def normalise(query: str) -> str:
    """Returns ``nbank:/ID[.ext]`` for a valid query; anything else unchanged (this
    never raises: Snakemake also passes invalid queries through it)."""
    try:
        if invalid_reason(query) is None:
            return SCHEME + local_suffix(query)
    except (TypeError, AttributeError, re.error):
        pass
    return query


def parse(query: str) -> tuple[str, str]:
    """Returns ``(id, ext)`` of a query without wildcards; ``ext`` is ``""`` or
    starts with ``.``. Raises InvalidIdentifier naming the problem."""
    reason = invalid_reason(query)
    if reason is not None:
        raise InvalidIdentifier(f"invalid nbank query {query!r}: {reason}")
    parsed = parse_query(query)
    return parsed.id, parsed.ext
