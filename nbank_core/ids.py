"""Identifier rules: what a resource id may be, and the forms users write it in.

A resource id is what django-neurobank accepts as a name: 1 to 255 characters of
letters, digits, ``_`` and ``-``. Users may also write an id as a full identifier URL
(``<registry>/resources/<id>/``) or as ``nbank:<id>`` / ``nbank://<id>``.

>>> from nbank_core.ids import parse_identifier, validate_id
>>> parse_identifier("http://host/neurobank/resources/st32_1/")
('http://host/neurobank/', 'st32_1')
>>> parse_identifier("nbank://st32_1")
(None, 'st32_1')
>>> validate_id("st32_1_2_1")
'st32_1_2_1'

Engines name resources in queries (:func:`parse_query`): ``nbank:ID``,
``nbank://ID`` (also ``nbank:/ID``, which some hosts make of ``nbank://ID``), a
bare ``ID`` or a full identifier URL, each optionally followed by one ``.ext``
(the file name's extension, since ids never contain ``.``).

>>> parse_query("nbank://u1_spikes.csv")
Query(registry=None, id='u1_spikes', ext='.csv')
"""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import PurePath
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from nbank_core.errors import InvalidIdentifier

__all__ = [
    "MAX_ID_LENGTH",
    "auto_id",
    "full_url",
    "id_from_filename",
    "Query",
    "parse_identifier",
    "parse_query",
    "split_prefix",
    "uuid_id",
    "validate_id",
]

MAX_ID_LENGTH = 255
_ID_RE = re.compile(r"[-_0-9A-Za-z]+")
_URL_RE = re.compile(r"^(?P<base>.*?/)resources/(?P<id>[^/]+)/?$")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_EXT_RE = re.compile(r"[A-Za-z0-9]{1,16}")
#: the prefixes of a query, longest first (``nbank:/ID`` is what a host makes of
#: ``nbank://ID`` when it normalises paths)
PREFIXES = ("nbank://", "nbank:/", "nbank:")


class Query(NamedTuple):
    """A parsed query: the registry a full URL names (else None), the id, and the
    extension (``""`` or ``.ext``)."""

    registry: str | None
    id: str
    ext: str


def validate_id(name: str) -> str:
    """Returns ``name`` if it is a valid resource id, else raises InvalidIdentifier.

    >>> validate_id("../etc")
    Traceback (most recent call last):
    ...
    nbank_core.errors.InvalidIdentifier: invalid identifier '../etc': ids may only ...
    """
    if not isinstance(name, str) or not name:
        raise InvalidIdentifier("invalid identifier: an id cannot be empty")
    if len(name) > MAX_ID_LENGTH:
        raise InvalidIdentifier(
            f"invalid identifier {name[:40]!r}...: {len(name)} characters, "
            f"the registry allows at most {MAX_ID_LENGTH}"
        )
    if _ID_RE.fullmatch(name) is None:
        raise InvalidIdentifier(
            f"invalid identifier {name!r}: ids may only contain letters, digits, "
            "'_' and '-' (no '/', '.', spaces or other characters)"
        )
    return name


def parse_identifier(text: str) -> tuple[str | None, str]:
    """Splits any written form of an id into ``(registry_url or None, id)``.

    Accepts a bare id, ``nbank:ID``, ``nbank://ID`` and a full identifier URL
    ``<registry>/resources/<id>/``. The id is validated.
    """
    if not isinstance(text, str):
        raise InvalidIdentifier(f"invalid identifier {text!r}: not a string")
    text = text.strip()
    body, prefixed = split_prefix(text)
    if prefixed:
        return None, validate_id(body)
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        m = _URL_RE.match(parts.path)
        if m is None:
            raise InvalidIdentifier(
                f"invalid identifier URL {text!r}: expected "
                "'<registry>/resources/<id>/'"
            )
        base = urlunsplit((parts.scheme, parts.netloc, m["base"], "", ""))
        return base, validate_id(m["id"])
    return None, validate_id(text)


def split_prefix(text: str) -> tuple[str, bool]:
    """Returns ``(body, had_prefix)``: ``text`` without its ``nbank:``,
    ``nbank:/`` or ``nbank://`` prefix and trailing ``/``.

    >>> split_prefix("nbank:/st32_1.wav")
    ('st32_1.wav', True)
    """
    text = text.strip()
    for prefix in PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :].rstrip("/"), True
    return text.rstrip("/"), False


def parse_query(text: str) -> Query:
    """Parses any written form of a resource in an engine: ``nbank://ID``,
    ``nbank:/ID``, ``nbank:ID``, ``ID`` or a full identifier URL, each with an
    optional ``.ext`` (1-16 letters or digits). Raises InvalidIdentifier naming
    the problem.

    >>> parse_query("nbank:st32_1_2_1")
    Query(registry=None, id='st32_1_2_1', ext='')
    >>> parse_query("http://host/neurobank/resources/st32_1.wav/")
    Query(registry='http://host/neurobank/', id='st32_1', ext='.wav')
    """
    if not isinstance(text, str):
        raise InvalidIdentifier(f"invalid query {text!r}: not a string")
    body, prefixed = split_prefix(text)
    base = None
    if not prefixed:
        try:
            parts = urlsplit(body)
        except ValueError as err:  # e.g. "Invalid IPv6 URL"
            raise InvalidIdentifier(f"invalid query {text!r}: {err}") from None
        if parts.scheme.lower() in ("http", "https") and parts.netloc:
            m = _URL_RE.match(parts.path + "/")
            if m is None:
                raise InvalidIdentifier(
                    f"invalid identifier URL {text!r}: expected "
                    "'<registry>/resources/<id>/'"
                )
            base = urlunsplit((parts.scheme, parts.netloc, m["base"], "", ""))
            body = m["id"]
    ident, dot, ext = body.partition(".")
    try:
        validate_id(ident)
    except InvalidIdentifier as err:
        raise InvalidIdentifier(f"invalid query {text!r}: {err}") from None
    if dot and _EXT_RE.fullmatch(ext) is None:
        raise InvalidIdentifier(
            f"invalid query {text!r}: after the id, one '.ext' of 1-16 letters or "
            "digits may follow (ids themselves cannot contain '.')"
        )
    return Query(base, ident, dot + ext)


def full_url(registry_url: str, name: str) -> str:
    """Returns the full identifier of ``name`` in the registry at ``registry_url``.

    >>> full_url("http://host/neurobank/", "st32_1")
    'http://host/neurobank/resources/st32_1/'
    """
    return f"{registry_url.rstrip('/')}/resources/{name}/"


def id_from_filename(path: str | PurePath) -> str:
    """Returns the id a file is deposited under: its name without the last suffix.

    >>> id_from_filename("/data/st32_1_2_1.wav")
    'st32_1_2_1'
    """
    p = PurePath(path)
    return validate_id(p.stem if p.suffix else p.name)


def auto_id() -> str:
    """Returns a random 8-character base-36 id, the form the registry assigns."""
    return "".join(secrets.choice(_BASE36) for _ in range(8))


def uuid_id() -> str:
    """Returns a random UUID4 id, for archives whose policy asks for them."""
    return str(uuid.uuid4())
