"""Registry backends behind one contract, and :func:`open_registry` to pick one by URL.

Accepted registry URLs (anything else is a :class:`~nbank_core.errors.ConfigError`
that names these forms, and nothing is created):

- ``http://host/path/`` or ``https://...`` (any case of the scheme): a
  django-neurobank server;
- ``sqlite:///abs/path.sqlite``, ``sqlite:relative/path.sqlite``,
  ``file:///abs/path`` (and ``sqlite:///:memory:``): an embedded registry;
- a plain file path, only where the caller says it is one (``path_ok=True``).

An embedded registry's file is created only when asked (``create=True``, as
``nbank init`` does); opening a missing one for reading is a ``NotFound``.

>>> from nbank_core.registry import open_registry
>>> with open_registry("sqlite:///:memory:") as reg:
...     reg.info()["name"]
'neurobank embedded registry'
>>> open_registry("htps://host/neurobank/")
Traceback (most recent call last):
...
nbank_core.errors.ConfigError: invalid registry URL 'htps://host/neurobank/': ...
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from nbank_core.errors import ConfigError
from nbank_core.redact import mask_url
from nbank_core.registry.base import BULK_BATCH, Registry

__all__ = [
    "BULK_BATCH",
    "Registry",
    "canonical_url",
    "is_embedded_url",
    "mask_url",
    "open_registry",
    "same_registry",
    "sqlite_path",
]

_ACCEPTED = (
    "expected http(s)://host/path/ for a django-neurobank server, or "
    "sqlite:///path/to/registry.sqlite (file:///path also works) for an embedded "
    "registry"
)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
_EMBEDDED = ("sqlite", "file")
_SERVER = ("http", "https")


def _kind(url: str, path_ok: bool = False) -> str:
    """``"http"`` or ``"sqlite"`` for an accepted URL; raises ConfigError else."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"invalid registry URL {url!r}: it is empty; {_ACCEPTED}")
    m = _SCHEME.match(url)
    scheme = m["scheme"].lower() if m else None
    if scheme in _SERVER:
        parts = urlsplit(url)
        if not url[m.end() :].startswith("//") or not parts.hostname:
            raise ConfigError(
                f"invalid registry URL {mask_url(url)!r}: no host after "
                f"'{scheme}://'; {_ACCEPTED}"
            )
        return "http"
    if scheme in _EMBEDDED:
        return "sqlite"
    if path_ok and (scheme is None or len(m["scheme"]) == 1):  # C:\ on Windows
        return "sqlite"
    raise ConfigError(f"invalid registry URL {mask_url(url)!r}: {_ACCEPTED}")


def is_embedded_url(url: str, *, path_ok: bool = False) -> bool:
    """True if ``url`` names an embedded (SQLite) registry, False for a server;
    raises ConfigError for anything else."""
    return _kind(url, path_ok) == "sqlite"


def sqlite_path(url: str) -> str:
    """Returns the database path an embedded registry URL names (``sqlite:///abs``,
    ``sqlite:rel``, ``file:///abs``, or a plain path); ``:memory:`` stays so.

    >>> sqlite_path("sqlite:///data/registry.sqlite")
    '/data/registry.sqlite'
    """
    m = _SCHEME.match(url)
    if m and m["scheme"].lower() in _EMBEDDED:
        url = url[m.end() :]
        if url.startswith("//"):
            url = url[2:]
    if url in (":memory:", "/:memory:"):
        return ":memory:"
    if not url:
        raise ConfigError(f"empty embedded registry path; {_ACCEPTED}")
    return str(Path(url).expanduser())


@functools.lru_cache(maxsize=256)
def canonical_url(url: str, *, path_ok: bool = False) -> str:
    """One spelling per registry, for comparing two URLs: a server's URL with its
    scheme and host in lower case, no credentials and one trailing slash; an
    embedded registry as ``sqlite://`` and its absolute, resolved path.

    >>> canonical_url("HTTP://Host:8000/neurobank")
    'http://host:8000/neurobank/'
    """
    if _kind(url, path_ok) == "sqlite":
        path = sqlite_path(url)
        if path == ":memory:":
            return "sqlite:///:memory:"
        return "sqlite://" + os.path.realpath(path)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = parts.path.rstrip("/") + "/"
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


def same_registry(a: str, b: str) -> bool:
    """True if the URLs ``a`` and ``b`` name the same registry."""
    return canonical_url(a) == canonical_url(b)


def open_registry(
    url: str,
    *,
    auth: tuple[str, str] | None = None,
    timeout: float | None = None,
    create: bool = False,
    path_ok: bool = False,
) -> Registry:
    """Opens the registry at ``url`` (see the accepted forms above).

    ``auth`` is ``(user, password)`` for a server (else ``~/.netrc`` is read when a
    write needs it). ``create`` lets an embedded registry's file be made if it does
    not exist; ``path_ok`` accepts a plain path for one. Nothing is contacted or
    created until the first request.
    """
    kwargs = {} if timeout is None else {"timeout": timeout}
    if _kind(url, path_ok) == "sqlite":
        from nbank_core.registry.sqlite import SqliteRegistry

        return SqliteRegistry(sqlite_path(url), create=create, **kwargs)
    from nbank_core.registry.http import HttpRegistry

    return HttpRegistry(url, auth=auth, **kwargs)
