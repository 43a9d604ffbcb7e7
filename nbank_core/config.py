"""Settings: explicit arguments first, then ``NBANK_*`` environment variables, then
files (``~/.netrc`` for credentials, an archive's ``nbank.json`` for its registry).

The one rule every front end (the ``nbank`` command, Snakemake, luigi, fsspec)
follows, through :func:`resolve_settings`:

- reads by id use the configured registry: an explicit one (``-r``, an engine's
  ``registry`` setting), else ``NBANK_REGISTRY``, else the embedded default;
- a deposit into an archive always uses the registry its ``nbank.json`` names, so
  ``NBANK_REGISTRY`` alone never makes a deposit fail; a front end given an
  archive reads through that registry too (its outputs must be found where they
  were registered);
- an *explicit* registry that differs from the archive's is one
  :class:`~nbank_core.errors.ConfigError`, raised before anything is done.

Environment:

- ``NBANK_REGISTRY``: the registry URL (``http(s)://.../neurobank/``, or
  ``sqlite:///path`` for an embedded registry). Unset: the embedded registry in the
  user's data directory (see :func:`default_registry_url`).
- ``NBANK_AUTH``: ``user:password`` for a server; else ``~/.netrc`` (or ``$NETRC``).
- ``NBANK_TIMEOUT``: seconds to wait for each answer of a server (default 30).
- ``NBANK_LOGIN``: where a server's Django login view is (a path, or ``none`` for
  Basic on every write); unset: the usual places (see
  :mod:`nbank_core.registry.login`).

>>> s = Settings.from_env(registry="http://127.0.0.1:8000/neurobank/", auth="me:pw")
>>> s
Settings(registry='http://127.0.0.1:8000/neurobank/', timeout=30.0)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING

from nbank_core.errors import ConfigError

if TYPE_CHECKING:
    from nbank_core.archive import ArchiveConfig
    from nbank_core.registry import Registry

__all__ = [
    "Settings",
    "default_registry_url",
    "parse_auth",
    "registry_mismatch",
    "resolve_settings",
]

log = logging.getLogger(__name__)

ENV_REGISTRY = "NBANK_REGISTRY"
ENV_AUTH = "NBANK_AUTH"
ENV_HOME = "NBANK_HOME"
ENV_TIMEOUT = "NBANK_TIMEOUT"


def parse_timeout(text: str, source: str = ENV_TIMEOUT) -> float:
    """Parses a timeout in seconds (a positive, finite number) given by ``source``
    (``NBANK_TIMEOUT``, ``--timeout``); ConfigError naming ``source`` otherwise.

    >>> parse_timeout("2.5")
    2.5
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigError(
            f"{source} must be a positive number of seconds, not {text!r}; "
            f"give e.g. 60 (the default is 30)"
        )
    return value


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
    #: the archive deposits go to (its path), if the front end has one
    archive: str | None = None
    _config: ArchiveConfig | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def from_env(
        cls,
        registry: str | None = None,
        auth: str | tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> Settings:
        """Explicit values, else ``NBANK_REGISTRY`` / ``NBANK_AUTH``, else defaults."""
        url = registry or os.environ.get(ENV_REGISTRY) or default_registry_url()
        if timeout is None and os.environ.get(ENV_TIMEOUT):
            timeout = parse_timeout(os.environ[ENV_TIMEOUT], ENV_TIMEOUT)
        if isinstance(auth, str) or auth is None:
            auth = parse_auth(auth if auth is not None else os.environ.get(ENV_AUTH))
        return cls(registry=url, auth=auth, timeout=timeout or 30.0)

    def __repr__(self) -> str:
        from nbank_core.redact import mask_url

        archive = "" if self.archive is None else f", archive={self.archive!r}"
        return (
            f"Settings(registry={mask_url(self.registry)!r}, "
            f"timeout={self.timeout!r}{archive})"
        )

    def open(self, *, create: bool = False) -> Registry:
        """Opens the registry these settings name (``create``: an embedded
        registry's file may be made)."""
        from nbank_core.registry import open_registry

        return open_registry(
            self.registry, auth=self.auth, timeout=self.timeout, create=create
        )

    def archive_config(self) -> ArchiveConfig:
        """The archive deposits go to; ConfigError if these settings have none."""
        if self._config is not None:
            return self._config
        if self.archive is None:
            raise ConfigError(
                "no archive is set to deposit into: name one (the archive setting "
                "of the front end, or the ARCHIVE argument of 'nbank deposit')"
            )
        from nbank_core.archive import read_config

        return read_config(self.archive)


def registry_mismatch(archive: str | os.PathLike[str], own: str, given: str) -> str:
    """The one message for an explicit registry that is not the archive's."""
    from nbank_core.registry import mask_url

    return (
        f"the archive at '{archive}' is registered in {mask_url(own)}, but the "
        f"registry was set explicitly to {mask_url(given)}: deposits always go to "
        "the archive's registry; remove the explicit registry setting or make it "
        "the archive's"
    )


def resolve_settings(
    registry: str | None = None,
    *,
    archive: str | os.PathLike[str] | ArchiveConfig | None = None,
    auth: str | tuple[str, str] | None = None,
    timeout: float | None = None,
) -> Settings:
    """The settings a front end uses, by the module's one rule.

    ``registry`` is the explicitly configured URL (``-r``, an engine setting) or
    None; ``archive`` the archive deposits go to, if any (a path or its config).
    Raises ConfigError for an unusable URL, an unreadable ``nbank.json`` or an
    explicit registry that is not the archive's.

    >>> import os, tempfile
    >>> resolve_settings("sqlite:///tmp/r.sqlite").registry
    'sqlite:///tmp/r.sqlite'
    """
    from nbank_core.registry import canonical_url, same_registry

    cfg = None
    if archive is not None:
        from nbank_core.archive import ArchiveConfig, read_config

        cfg = archive if isinstance(archive, ArchiveConfig) else read_config(archive)
    if cfg is None:
        url = registry or os.environ.get(ENV_REGISTRY) or default_registry_url()
        canonical_url(url)  # ConfigError for a URL that is not one
        return Settings.from_env(registry=url, auth=auth, timeout=timeout)
    if registry and not same_registry(registry, cfg.registry):
        raise ConfigError(registry_mismatch(cfg.path, cfg.registry, registry))
    env = os.environ.get(ENV_REGISTRY)
    if env and not registry:
        log.debug(
            "using %s, the registry of the archive at %s (not NBANK_REGISTRY)",
            cfg.registry,
            cfg.path,
        )
    canonical_url(cfg.registry)
    base = Settings.from_env(registry=cfg.registry, auth=auth, timeout=timeout)
    return dataclasses.replace(base, archive=str(cfg.path), _config=cfg)
