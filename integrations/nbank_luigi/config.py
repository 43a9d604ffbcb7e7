"""The ``[nbank]`` section of luigi's configuration, and the settings it gives.

Values come from the constructor of a target, then ``[nbank]`` in ``luigi.cfg``
(or ``LUIGI_CONFIG_PATH``), overridable on the command line with
``--nbank-registry``, ``--nbank-archive`` and so on. When no registry is named
there, the archive's ``nbank.json`` names it, then ``NBANK_REGISTRY``, then the
embedded default. Credentials never go here (luigi shows configuration values in
its scheduler): use ``NBANK_AUTH`` or ``~/.netrc``.

.. code-block:: ini

    [nbank]
    archive = /data/lab-archive
    dtype = spike-times

>>> nbank().cache_ttl
10.0
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import luigi

from nbank_core import ArchiveConfig, ConfigError, Settings, read_config

__all__ = ["archive_config", "nbank", "resolve_settings", "setting"]


class nbank(luigi.Config):  # noqa: N801 - luigi names the section after the class
    """Settings of the ``[nbank]`` section (``--nbank-<name>`` on the command line)."""

    registry = luigi.OptionalParameter(
        default=None,
        description="registry URL (default: the archive's, else NBANK_REGISTRY, "
        "else the embedded registry)",
    )
    archive = luigi.OptionalParameter(
        default=None, description="archive that task outputs are deposited into"
    )
    dtype = luigi.OptionalParameter(
        default=None, description="datatype of outputs whose task names none"
    )
    prefetch = luigi.BoolParameter(
        default=True,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,  # --nbank-prefetch false
        description="look up the outputs of every known task in one bulk request "
        "when one of them is checked",
    )
    cache_ttl = luigi.FloatParameter(
        default=10.0, description="seconds a found resource is trusted without asking"
    )


@functools.lru_cache(maxsize=64)
def _read_config(path: str, mtime_ns: int) -> ArchiveConfig:
    return read_config(path)


def archive_config(path: str | os.PathLike[str]) -> ArchiveConfig:
    """Reads the archive at ``path`` (cached while its ``nbank.json`` is unchanged)."""
    fname = Path(path).expanduser() / "nbank.json"
    try:
        mtime = fname.stat().st_mtime_ns
    except OSError:
        mtime = -1  # read_config says what is wrong
    return _read_config(str(Path(path).expanduser()), mtime)


def setting(name: str) -> Any:
    """One ``[nbank]`` value, command line first (cheaper than ``nbank()``, which
    resolves every parameter; targets are made by the thousand)."""
    return getattr(nbank, name).task_value("nbank", name)


def resolve_settings(
    registry: str | None = None, archive: str | None = None
) -> tuple[Settings, str | None]:
    """Returns the registry settings and archive path a target uses: explicit
    values, then ``[nbank]``, then the registry named in the archive's
    ``nbank.json`` (where its deposits must be registered), then ``NBANK_*``."""
    archive = archive or setting("archive") or None
    url = registry or setting("registry") or None
    if not url and archive:
        url = archive_config(archive).registry
    try:
        return Settings.from_env(registry=url), archive
    except ConfigError as err:
        raise ConfigError(f"[nbank] settings cannot be used: {err}") from None
