"""How the HTTP registry reports a failure: a transport error or an error answer of
django-neurobank becomes one of neurobank's errors, its message saying what failed,
why, and what to do, with any password in a URL masked.

>>> _field_errors({"name": ["a resource with this name already exists"]})
['name: a resource with this name already exists']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from nbank_core.errors import (
    AlreadyExists,
    AuthError,
    BadResponse,
    ConfigError,
    NbankError,
    NotFound,
    RegistryRejected,
    RegistryUnavailable,
)
from nbank_core.redact import mask_text

__all__ = ["map_error", "not_json"]

_VERBS = {"GET": "get", "POST": "add", "PATCH": "update", "DELETE": "delete"}
_NOT_FOUND_HINTS = ("no such dtype", "no such archive", "no such resource")
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def _field_errors(body: Any, prefix: str = "") -> list[str]:
    """Flattens DRF's error body into ``["field: message", ...]``."""
    if isinstance(body, Mapping):
        out = []
        for key, value in body.items():
            name = key if key in ("non_field_errors", "detail") else f"{prefix}{key}"
            out += _field_errors(value, f"{name}." if isinstance(value, dict) else name)
        return out
    if isinstance(body, list):
        return [m for item in body for m in _field_errors(item, prefix)]
    label = prefix.rstrip(".")
    plain = label in ("", "detail", "non_field_errors")
    return [str(body) if plain else f"{label}: {body}"]


def not_json(url: str, response: requests.Response) -> BadResponse:
    ctype = response.headers.get("Content-Type", "?")
    return BadResponse(
        f"the registry at {url} answered with something that is not JSON (status "
        f"{response.status_code}, content-type {ctype}): is the URL the registry's "
        "API root?"
    )


def map_error(
    url: str,
    what: str,
    method: str,
    *,
    response: requests.Response | None = None,
    exc: requests.RequestException | None = None,
    user: str | None = None,
    timeout: float = 0.0,
    attempts: int = 1,
    elapsed: float = 0.0,
) -> NbankError:
    """Translates a transport failure or an error response into neurobank's errors,
    with any password in a URL (the request's, a redirect's) masked."""
    err = _describe(url, what, method, response, exc, user, timeout, attempts, elapsed)
    return type(err)(mask_text(str(err)))


def _describe(
    url: str,
    what: str,
    method: str,
    response: requests.Response | None,
    exc: requests.RequestException | None,
    user: str | None,
    timeout: float,
    attempts: int,
    elapsed: float,
) -> NbankError:
    if exc is not None:
        if isinstance(exc, ValueError):  # InvalidURL, MissingSchema, InvalidSchema
            return ConfigError(f"invalid registry URL {url!r}: {exc}")
        if not isinstance(exc, _TRANSIENT):  # e.g. TooManyRedirects
            return BadResponse(f"the registry at {url} cannot be used: {exc}")
        if isinstance(exc, requests.Timeout):
            reason = f"no answer within {timeout:g} s"
        else:  # the innermost OSError says it best: "Connection refused"
            inner: BaseException = exc
            while (inner.__cause__ or inner.__context__) is not None:
                inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
            reason = getattr(inner, "strerror", None) or str(exc)
        if attempts > 1:
            reason += f" ({attempts} attempts, {elapsed:.1f} s in all)"
        hint = " or a longer --timeout" if isinstance(exc, requests.Timeout) else ""
        return RegistryUnavailable(
            f"cannot reach the registry at {url}: {reason}. Check that the server is "
            f"running and the URL is right (-r or NBANK_REGISTRY){hint}"
        )
    assert response is not None
    status, verb = response.status_code, _VERBS.get(method, method.lower())
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = "; ".join(_field_errors(body)) if body is not None else ""
    if status >= 500:
        return RegistryUnavailable(
            f"the registry at {url} failed with status {status} trying to {verb} "
            f"{what}{': ' + detail if detail else ''}. The server may be overloaded "
            "or broken: try again later or tell its administrator"
        )
    if status in (401, 403):
        who = f"as user '{user}'" if user else "without credentials"
        return AuthError(
            f"the registry at {url} refused to let you {verb} {what} {who} "
            f"({status}: {detail or response.reason}). Pass -a user:password or add "
            "the host to ~/.netrc, with a user allowed to do this"
        )
    if 300 <= status < 400:
        return BadResponse(
            f"the registry at {url} redirected a {method} to "
            f"{response.headers.get('Location')!r}: use the address it redirects "
            "to as the registry URL (-r or NBANK_REGISTRY)"
        )
    if body is None:
        return not_json(url, response)
    if status == 404:
        return NotFound(f"{what} is not registered at {url}")
    lowered = detail.lower()
    if status == 400 and ("already" in lowered or "unique" in lowered):
        return AlreadyExists(
            f"cannot {verb} {what}: the registry at {url} already holds a "
            f"conflicting record ({detail})"
        )
    if status == 400 and any(hint in lowered for hint in _NOT_FOUND_HINTS):
        return NotFound(
            f"cannot {verb} {what} at {url}: {detail}. Register what is missing first"
        )
    return RegistryRejected(
        f"the registry at {url} refused to {verb} {what} (status {status}): "
        f"{detail or response.reason}"
    )
