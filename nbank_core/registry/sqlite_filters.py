"""django-neurobank's resource filters, compiled to SQL for the embedded registry.

The server filters ``resources/`` with django-filter (``ResourceFilter``) and then
with ``metadata__`` parameters (``ResourceList.filter_queryset``), through Django's
ORM on SQLite. :func:`compile_filters` writes the same conditions by hand, down to
Django's quirks: empty values are ignored, substrings match ASCII case-insensitively
(``LIKE``), and ``metadata__k__neq=v`` drops a resource whose metadata lacks ``k``
but keeps one whose metadata is null.

Supported: ``name``, ``dtype``, ``location``, ``sha1_contains``, ``created_by``
(substrings), ``sha1`` (lowercased), ``archive`` (exact), ``scheme`` (prefix),
``has_location``, ``experimenter`` and ``animal`` (with ``__neq`` and ``__isnull``;
``animal__istartswith``), and ``metadata__<key>[__<nested key>...]`` with the
lookups exact (the default; the value is JSON-decoded when it parses), ``isnull``,
``icontains`` and ``istartswith``, each also with ``__neq``. Other Django lookups
(``gt``, ``in``, regexes...) and ``created_on`` filters are refused or ignored.

>>> compile_filters({"name": "st32", "metadata__site": "3"})[1]
['%st32%', '$."site"', '$."site"', '$."site"', '3']
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from nbank_core.errors import RegistryRejected

__all__ = ["LIKE", "compile_filters", "like"]

#: a LIKE comparison with backslash escapes, as Django writes it on SQLite
LIKE = " LIKE ? ESCAPE '\\'"
_BOOL = {"true": True, "1": True, "false": False, "0": False}
_CORE = ("animal", "experimenter")
_HAS_LOCATION = (
    "EXISTS (SELECT 1 FROM locations l JOIN archives a ON a.id = l.archive_id"
    " WHERE l.resource_id = r.id AND {})"
)
# filter -> (condition on resources r joined to datatypes d, how to use the value)
_FILTERS = {
    "name": ("r.name" + LIKE, "contains"),
    "sha1": ("r.sha1 = ?", "lower"),
    "sha1_contains": ("r.sha1" + LIKE, "contains"),
    "dtype": ("d.name" + LIKE, "contains"),
    "location": (_HAS_LOCATION.format("a.name" + LIKE), "contains"),
    "archive": (_HAS_LOCATION.format("a.name = ?"), "exact"),
    "scheme": (_HAS_LOCATION.format("a.scheme" + LIKE), "startswith"),
    "created_by": ("r.created_by" + LIKE, "contains"),
    "experimenter": ("r.experimenter = ?", "exact"),
    "experimenter__neq": ("r.experimenter IS NOT ?", "exact"),
    "animal": ("r.animal = ?", "exact"),
    "animal__neq": ("r.animal IS NOT ?", "exact"),
    "animal__istartswith": ("r.animal" + LIKE, "startswith"),
    "has_location": (_HAS_LOCATION.format("1"), "bool"),
    "experimenter__isnull": ("r.experimenter IS NULL", "bool"),
    "animal__isnull": ("r.animal IS NULL", "bool"),
}
_LOOKUPS = {"exact", "isnull", "icontains", "istartswith"}
_UNSUPPORTED = {
    *("iexact", "contains", "startswith", "endswith", "iendswith", "regex"),
    *("iregex", "lt", "lte", "gt", "gte", "in", "range", "contained_by"),
    *("has_key", "has_keys", "has_any_keys"),
}
# a metadata key's value as Django's KeyTransform reads it on SQLite
_JSON_VALUE = (
    "(CASE WHEN json_type(r.metadata, ?) IN ('null', 'true', 'false')"
    " THEN json_type(r.metadata, ?) ELSE json_extract(r.metadata, ?) END)"
)


def like(value: str, prefix: bool = False) -> str:
    """The LIKE pattern for a substring (or, with ``prefix``, a prefix) match."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%" if prefix else f"%{escaped}%"


def _json_path(keys: Iterable[str]) -> str:
    """The JSON path Django's ``compile_json_path`` builds for nested keys."""
    path = "$"
    for key in keys:
        try:
            path += f"[{int(key)}]"
        except ValueError:
            path += "." + json.dumps(key)
    return path


def _metadata_filter(param: str, value: str) -> tuple[str, list[Any], bool]:
    """Compiles ``metadata__<key>[__<lookup>][__neq]``.

    Returns ``(condition, parameters, is_exclusion)``.
    """
    spec = param.removeprefix("metadata__")
    exclude = spec.endswith("__neq")
    keys = spec.removesuffix("__neq").split("__")
    known = len(keys) > 1 and keys[-1] in _LOOKUPS | _UNSUPPORTED
    lookup = keys.pop() if known else "exact"
    if lookup in _UNSUPPORTED:
        raise RegistryRejected(
            f"unsupported search filter {param!r}: the embedded registry supports "
            "the metadata lookups exact, isnull, icontains and istartswith"
        )
    core = keys[0] in _CORE
    if core and len(keys) > 1:
        raise RegistryRejected(f"invalid search filter {param!r}: no such field")
    parsed: Any = value
    if lookup == "isnull":
        if value.lower() not in _BOOL:
            raise RegistryRejected(f"invalid {param}={value!r}: must be true or false")
        parsed = _BOOL[value.lower()]
        column = f"r.{keys[0]}" if core else "json_type(r.metadata, ?)"
        sql = f"{column} IS {'' if parsed else 'NOT '}NULL"
        return sql, [] if core else [_json_path(keys)], exclude
    if core:
        lhs, params, nullable = f"r.{keys[0]}", [], f"r.{keys[0]}"
    else:
        try:  # numbers, booleans, null and objects, as the server decodes them
            parsed = json.loads(value)
        except ValueError:
            pass
        lhs, params, nullable = _JSON_VALUE, [_json_path(keys)] * 3, "r.metadata"
    if lookup in ("icontains", "istartswith"):
        sql, rhs = lhs + LIKE, like(str(parsed), lookup == "istartswith")
    elif core:
        sql, rhs = lhs + " = ?", parsed
    else:
        rhs = json.dumps(parsed)
        plain = rhs in ("null", "true", "false")
        sql = lhs + (" = ?" if plain else " = json_extract(?, '$')")
    if exclude and parsed is not None:  # Django adds this to exclusions
        sql += f" AND {nullable} IS NOT NULL"
    return sql, [*params, rhs], exclude


def compile_filters(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Returns ``(where, params)`` for the search ``filters``; values that are not
    strings are taken as JSON, as the HTTP backend sends them. Unknown filters are
    ignored; an unsupported metadata lookup raises RegistryRejected."""
    where, params, excluded, excluded_params = ["1"], [], [], []
    for param, raw in filters.items():
        if raw is None:
            continue
        value = raw if isinstance(raw, str) else json.dumps(raw, default=str)
        if param.startswith("metadata__"):
            sql, args, exclude = _metadata_filter(param, value)
            (excluded if exclude else where).append(f"({sql})")
            (excluded_params if exclude else params).extend(args)
            continue
        value = value.strip()  # as a django-filter CharFilter
        if param not in _FILTERS or not value:
            continue
        sql, kind = _FILTERS[param]
        if kind == "bool":
            flag = _BOOL.get(value.lower())
            if flag is not None:  # anything else: the filter is ignored
                where.append(sql if flag else f"NOT {sql}")
            continue
        where.append(sql)
        if kind in ("contains", "startswith"):
            params.append(like(value, kind == "startswith"))
        else:
            params.append(value.lower() if kind == "lower" else value)
    if excluded:  # one exclude(**kwargs): NOT (all of them)
        where.append(f"NOT ({' AND '.join(excluded)})")
    return " AND ".join(where), params + excluded_params
