"""Registry backends behind one contract, and :func:`open_registry` to pick one by URL.

>>> from nbank_core.registry import open_registry
>>> with open_registry("sqlite:///:memory:") as reg:
...     reg.info()["name"]
'neurobank embedded registry'
"""

from __future__ import annotations

from pathlib import Path

from nbank_core.errors import ConfigError
from nbank_core.registry.base import BULK_BATCH, Registry

__all__ = ["BULK_BATCH", "Registry", "is_embedded_url", "open_registry", "sqlite_path"]


def is_embedded_url(url: str) -> bool:
    """True if ``url`` names an embedded (SQLite) registry rather than a server."""
    return url.startswith(("sqlite:", "file:")) or not url.startswith(
        ("http://", "https://")
    )


def sqlite_path(url: str) -> str:
    """Returns the database path an embedded registry URL names.

    Accepts ``sqlite:///abs/path``, ``sqlite:relative/path``, ``file:///abs/path``
    and a plain path; ``sqlite:///:memory:`` is an in-memory registry.
    """
    for prefix in ("sqlite://", "sqlite:", "file://", "file:"):
        if url.startswith(prefix):
            url = url[len(prefix) :]
            break
    if url in (":memory:", "/:memory:"):
        return ":memory:"
    if not url:
        raise ConfigError("empty embedded registry path")
    return str(Path(url).expanduser())


def open_registry(
    url: str,
    *,
    auth: tuple[str, str] | None = None,
    timeout: float | None = None,
) -> Registry:
    """Opens the registry at ``url``: ``http(s)://`` is a django-neurobank server,
    ``sqlite:`` / ``file:`` or a path is an embedded registry.

    ``auth`` is ``(user, password)`` for a server (else ``~/.netrc`` is read when a
    request needs it). Nothing is contacted until the first request.
    """
    if is_embedded_url(url):
        from nbank_core.registry.sqlite import SqliteRegistry

        return SqliteRegistry(sqlite_path(url))
    from nbank_core.registry.http import HttpRegistry

    kwargs = {} if timeout is None else {"timeout": timeout}
    return HttpRegistry(url, auth=auth, **kwargs)
