"""Settings: explicit arguments first, then ``NBANK_*`` environment variables, then
files (``~/.netrc`` for credentials, an archive's ``nbank.json`` for its registry).

- ``NBANK_REGISTRY``: the registry URL (``http(s)://.../neurobank/``, or
  ``sqlite:///path`` for an embedded registry). Unset: the embedded registry in the
  user's data directory (see :func:`default_registry_url`).
- ``NBANK_AUTH``: ``user:password`` for a server; else ``~/.netrc`` (or ``$NETRC``).

>>> s = Settings.from_env(registry="http://127.0.0.1:8000/neurobank/", auth="me:pw")
>>> s
Settings(registry='http://127.0.0.1:8000/neurobank/', timeout=30.0)
"""

from __future__ import annotations

import dataclasses
import os

from nbank_core.errors import ConfigError

__all__ = ["Settings", "default_registry_url", "parse_auth"]

ENV_REGISTRY = "NBANK_REGISTRY"
ENV_AUTH = "NBANK_AUTH"
ENV_HOME = "NBANK_HOME"


def default_registry_url() -> str:
    """The embedded registry used when none is named:
    ``$NBANK_HOME/registry.sqlite``, else ``registry.sqlite`` in the user's data
    directory (``~/.local/share/neurobank`` on Linux)."""
    home = os.environ.get(ENV_HOME)
    if not home:
        import platformdirs

        home = platformdirs.user_data_dir("neurobank", appauthor=False)
    return "sqlite://" + os.path.join(os.path.abspath(home), "registry.sqlite")


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """Parses ``user:password``; None stays None (then ``~/.netrc`` is used).

    >>> parse_auth("me:s3:cret")
    ('me', 's3:cret')
    """
    if text is None or text == "":
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ConfigError("credentials must be given as user:password")
    return user, password


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the registry is and how to talk to it. The password never shows in
    ``repr``."""

    registry: str
    auth: tuple[str, str] | None = dataclasses.field(default=None, repr=False)
    timeout: float = 30.0

    @classmethod
    def from_env(
        cls,
        registry: str | None = None,
        auth: str | tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> Settings:
        """Explicit values, else ``NBANK_REGISTRY`` / ``NBANK_AUTH``, else defaults."""
        url = registry or os.environ.get(ENV_REGISTRY) or default_registry_url()
        if isinstance(auth, str) or auth is None:
            auth = parse_auth(auth if auth is not None else os.environ.get(ENV_AUTH))
        return cls(registry=url, auth=auth, timeout=timeout or 30.0)

    def open(self):  # -> Registry (imported lazily to keep start-up fast)
        """Opens the registry these settings name."""
        from nbank_core.registry import open_registry

        return open_registry(self.registry, auth=self.auth, timeout=self.timeout)
