"""The ``[nbank]`` section of luigi's configuration, and the settings it gives.

Values come from the constructor of a target, then ``[nbank]`` in ``luigi.cfg``
(or ``LUIGI_CONFIG_PATH``), overridable on the command line with
``--nbank-registry``, ``--nbank-archive`` and so on. Which registry is used
follows the core's one rule (:func:`nbank_core.resolve_settings`): with an
archive, the registry its ``nbank.json`` names, for reads and deposits alike
(``NBANK_REGISTRY`` is then ignored); a ``registry`` set here that is not the
archive's is an error before any task runs. Without an archive: ``registry``,
else ``NBANK_REGISTRY``, else the embedded default. Credentials never go here
(luigi shows configuration values in its scheduler): use ``NBANK_AUTH`` or
``~/.netrc``.

.. code-block:: ini

    [nbank]
    archive = /data/lab-archive
    dtype = spike-times

>>> nbank().prefetch
True
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import luigi
from luigi.parameter import ParameterException

from nbank_core import ArchiveConfig, ConfigError, Settings, read_config
from nbank_core import resolve_settings as core_settings

__all__ = ["SettingsError", "archive_config", "nbank", "resolve_settings", "setting"]


class nbank(luigi.Config):  # noqa: N801 - luigi names the section after the class
    """Settings of the ``[nbank]`` section (``--nbank-<name>`` on the command line)."""

    registry = luigi.OptionalParameter(
        default=None,
        description="registry URL for reads without an archive (default: "
        "NBANK_REGISTRY, else the embedded registry); with an archive it must be "
        "the archive's, or be left unset",
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


class SettingsError(ConfigError, ParameterException):
    """The ``[nbank]`` settings (or a target's) cannot be used: a neurobank
    ConfigError that luigi also knows as a bad parameter. Its text is the core's,
    one line, the same as every other front end prints."""


@functools.lru_cache(maxsize=64)
def _read_config(path: str, mtime_ns: int) -> ArchiveConfig:
    return read_config(path)


def archive_config(path: str | os.PathLike[str]) -> ArchiveConfig:
    """Reads the archive at ``path`` (cached while its ``nbank.json`` is unchanged:
    targets are made by the thousand)."""
    root = Path(path).expanduser()
    try:
        mtime = (root / "nbank.json").stat().st_mtime_ns
    except OSError:
        mtime = -1  # read_config says what is wrong
    return _read_config(str(root), mtime)


def setting(name: str) -> Any:
    """One ``[nbank]`` value, command line first (cheaper than ``nbank()``, which
    resolves every parameter)."""
    return getattr(nbank, name).task_value("nbank", name)


def resolve_settings(
    registry: str | None = None,
    archive: str | os.PathLike[str] | None = None,
    *,
    use_archive: bool = True,
) -> Settings:
    """The settings of a target: ``registry`` and ``archive`` as given, else the
    ``[nbank]`` values, passed to :func:`nbank_core.resolve_settings`. Without
    ``use_archive`` no archive is used (a target naming another registry by a
    full URL only reads). Raises :class:`SettingsError` with the core's text."""
    registry = registry or setting("registry") or None
    where = (archive or setting("archive") or None) if use_archive else None
    try:
        cfg = archive_config(where) if where is not None else None
        return core_settings(registry, archive=cfg)
    except ConfigError as err:
        raise SettingsError(str(err)) from None
