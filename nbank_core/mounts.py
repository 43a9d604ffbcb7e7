"""Archives mounted at another path on this host than the root the registry knows.

The lab's file server may be ``/home/data/archive`` on one host and
``/Volumes/archive`` on another, while the registry records one root per archive.
Each user records, per host, where an archive is mounted:

- in ``mounts.json`` in the user's configuration directory
  (``~/.config/neurobank/mounts.json`` on Linux, ``$NBANK_HOME/mounts.json`` when
  that is set; ``nbank archive mount NAME PATH`` writes it, atomically);
- in ``NBANK_MOUNTS`` (``name=/path:name2=/path2``), for cluster jobs; an entry
  there wins over the file's.

Every lookup goes through this module: :class:`~nbank_core.resolve.Resolver` maps a
registry's archive to the directory mounted here with :func:`local_root`, and a
deposit or a check maps a local archive back to its registry record with
:func:`registered_archive`.

>>> parse_env("lab=/Volumes/archive:old=/mnt/old")
{'lab': PosixPath('/Volumes/archive'), 'old': PosixPath('/mnt/old')}
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbank_core.errors import ConfigError, NotFound
from nbank_core.fsutil import atomic_write_text

if TYPE_CHECKING:
    from nbank_core.archive import ArchiveConfig
    from nbank_core.registry.base import ArchiveRecord, Registry

__all__ = [
    "ENV_MOUNTS",
    "add_mount",
    "list_mounts",
    "local_root",
    "mounts_file",
    "parse_env",
    "registered_archive",
    "remove_mount",
]

ENV_MOUNTS = "NBANK_MOUNTS"
FILE_NAME = "mounts.json"
_NAME = re.compile(r"[-a-zA-Z0-9_]{1,32}")


def mounts_file() -> Path:
    """Where this user's mounts are recorded: ``mounts.json`` in ``$NBANK_HOME``
    if it is set, else in the user's configuration directory
    (``$XDG_CONFIG_HOME/neurobank``, ``~/.config/neurobank`` on Linux)."""
    home = os.environ.get("NBANK_HOME")
    if home:
        return Path(home).expanduser().absolute() / FILE_NAME
    import platformdirs

    return Path(platformdirs.user_config_dir("neurobank", appauthor=False)) / FILE_NAME


def parse_env(text: str) -> dict[str, Path]:
    """Parses ``NBANK_MOUNTS``: ``name=/abs/path`` entries separated by ``:``
    (empty entries are skipped); ConfigError for an entry that is not one."""
    out: dict[str, Path] = {}
    for entry in text.split(":"):
        if not entry.strip():
            continue
        name, sep, path = entry.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name) or not os.path.isabs(path):
            raise ConfigError(
                f"{ENV_MOUNTS}: {entry!r} is not NAME=/absolute/path; write it as "
                "'lab=/Volumes/archive:other=/mnt/other'"
            )
        out[name] = Path(os.path.normpath(path))
    return out


def _read_file(path: Path) -> dict[str, Path]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        doc = json.loads(text)
        entries = doc["mounts"]
        if not isinstance(entries, dict):
            raise TypeError
        return {str(k): Path(str(v)) for k, v in entries.items()}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f'{path} is not a mounts file ({{"mounts": {{NAME: PATH}}}}); correct '
            "or remove it, then record the mounts again with 'nbank archive mount'"
        ) from None


def list_mounts(
    *, environ: Mapping[str, str] | None = None, file: Path | None = None
) -> dict[str, Path]:
    """Returns ``{archive name: local directory}``: the user's file, then
    ``NBANK_MOUNTS`` over it. Read each time it is called (cheap: one small file).

    >>> list_mounts(environ={"NBANK_MOUNTS": "lab=/srv/lab"}, file=Path("/nonexistent"))
    {'lab': PosixPath('/srv/lab')}
    """
    env = os.environ if environ is None else environ
    found = _read_file(mounts_file() if file is None else file)
    found.update(parse_env(env.get(ENV_MOUNTS, "")))
    return found


def add_mount(
    name: str, path: str | os.PathLike[str], *, file: Path | None = None
) -> Path:
    """Records that archive ``name`` is mounted at ``path`` on this host and returns
    the absolute path recorded. ``path`` must hold an archive (its ``nbank.json``);
    the file is rewritten atomically."""
    from nbank_core.archive import read_config

    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"archive name {name!r} must be 1-32 letters, digits, '_' or '-' (see "
            "'nbank archive list')"
        )
    cfg = read_config(path)  # NotFound if there is no archive there
    target = mounts_file() if file is None else file
    entries = _read_file(target)
    entries[name] = cfg.path
    _write(target, entries)
    return cfg.path


def remove_mount(name: str, *, file: Path | None = None) -> Path:
    """Forgets where archive ``name`` is mounted and returns the path it had;
    NotFound if none is recorded in the user's file."""
    target = mounts_file() if file is None else file
    entries = _read_file(target)
    if name not in entries:
        raise NotFound(
            f"no mount of archive '{name}' is recorded in {target} (see 'nbank "
            "archive mounts')"
        )
    old = entries.pop(name)
    _write(target, entries)
    return old


def _write(target: Path, entries: Mapping[str, Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {"mounts": {k: str(v) for k, v in sorted(entries.items())}}
    atomic_write_text(target, json.dumps(doc, indent=2) + "\n", overwrite=True)


def local_root(
    archive: Mapping[str, Any], mounts: Mapping[str, Path] | None = None
) -> list[str]:
    """The directories to look for ``archive`` (a registry archive or location
    record) on this host, best first: where it is mounted here, then its root.

    >>> local_root({"name": "lab", "root": "/data/lab"}, {"lab": Path("/Volumes/lab")})
    ['/Volumes/lab', '/data/lab']
    """
    mounts = list_mounts() if mounts is None else mounts
    name = archive.get("name") or archive.get("archive_name")
    out = []
    if name in mounts:
        out.append(str(mounts[name]))
    root = archive.get("root")
    if root and root not in out:
        out.append(str(root))
    return out


def registered_archive(
    reg: Registry, cfg: ArchiveConfig, mounts: Mapping[str, Path] | None = None
) -> ArchiveRecord | None:
    """The registry's record of the local archive ``cfg``: the archive registered
    at its real root, else the one recorded as mounted at ``cfg.path`` here (whose
    record must exist and use the ``neurobank`` scheme). None if neither."""
    found = reg.find_archive_by_root(str(cfg.path))
    if found is not None:
        return found
    mounts = list_mounts() if mounts is None else mounts
    here = os.path.realpath(cfg.path)
    for name, path in sorted(mounts.items()):
        if os.path.realpath(path) != here:
            continue
        try:
            record = reg.get_archive(name)
        except NotFound:
            continue
        if record.get("scheme") == "neurobank":
            return record
    return None
