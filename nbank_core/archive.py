"""The archive on disk: ``nbank.json``, its policies, resource paths and permissions.

An archive is a directory holding ``nbank.json``, ``README.md``, ``.gitignore``,
``resources/`` (files at ``resources/<id[:2]>/<id><ext>``) and ``staging/`` (work in
progress of deposits). The layout and ``nbank.json`` are those of the existing
``nbank`` client, so either tool works on archives the other made. This module
knows nothing of registries: :mod:`nbank_core.transaction` and :mod:`nbank_core.resolve`
join the two.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp()) / "arch"
>>> cfg = create_archive(root, "sqlite:///tmp/reg.sqlite")
>>> cfg.resource_path("st32_1", ".wav").relative_to(cfg.path).as_posix()
'resources/st/st32_1.wav'
"""

from __future__ import annotations

import dataclasses
import grp
import json
import os
import pwd
import stat
import sys
from pathlib import Path
from typing import Any

from nbank_core.errors import ConfigError, NotFound
from nbank_core.fsutil import atomic_write_text

__all__ = [
    "CONFIG_NAME",
    "ArchiveConfig",
    "create_archive",
    "read_config",
]

CONFIG_NAME = "nbank.json"
SCHEMA_URL = "https://melizalab.github.io/neurobank/config.json#"
RESOURCES = "resources"
STAGING = "staging"
DEFAULT_UMASK = 0o002
_SETGID = stat.S_ISGID if sys.platform.startswith("linux") else 0
_CREATED = (CONFIG_NAME, "README.md", ".gitignore")
_README = """
This directory contains a neurobank data management archive. The following files
and directories are part of the archive:

 + README.md: this file
 + nbank.json: information and configuration for the archive
 + resources/:  registered source files and deposited data
 + staging/:  files being prepared for deposit (`nbank check --fix` completes or
   removes anything left here by an interrupted deposit)

Files in `resources` are organized into subdirectories based on the first two
characters of the files' identifiers.

# Quick reference

Deposit resources: `nbank deposit archive_path file-1 [file-2 [file-3]]`

Deposited files are given the group and permissions specified in `nbank.json`.
"""


@dataclasses.dataclass(frozen=True)
class ArchiveConfig:
    """An archive's location and policy, read from its ``nbank.json``."""

    path: Path
    registry: str
    auto_identifiers: bool = False
    auto_id_type: str | None = None
    keep_extensions: bool = True
    allow_directories: bool = False
    require_hash: bool = True
    user: str | None = None
    group: str | None = None
    umask: int = DEFAULT_UMASK
    read_only_resources: bool = True
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    # -- paths ----------------------------------------------------------------
    @property
    def resources_dir(self) -> Path:
        return self.path / RESOURCES

    @property
    def staging_dir(self) -> Path:
        return self.path / STAGING

    def shard_dir(self, name: str) -> Path:
        """The directory that holds ``name``'s file: ``resources/<name[:2]>``."""
        return self.resources_dir / name[:2]

    def resource_path(self, name: str, suffix: str = "") -> Path:
        """Where a resource deposited from a file with ``suffix`` is stored."""
        return self.shard_dir(name) / (name + (suffix if self.keep_extensions else ""))

    def candidate_paths(self, name: str, filename: str | None = None) -> list[Path]:
        """The paths a stored resource is expected at, cheapest guesses first.

        ``filename`` is the registry's predicted file name (id plus the datatype's
        extension). Each is one ``stat``; no directory is listed.
        """
        shard = self.shard_dir(name)
        names = [filename, name] if filename and filename != name else [name]
        return [shard / n for n in names]

    def find_file(self, name: str, filename: str | None = None) -> Path | None:
        """Returns the stored file of ``name``, or None.

        Tries the predicted names (one ``stat`` each), then lists the shard
        directory for ``<name>.*`` only if none matched: an extension other than
        the datatype's costs one scan, a hit never does.
        """
        for path in self.candidate_paths(name, filename):
            if os.path.lexists(path):
                return path
        shard = self.shard_dir(name)
        prefix = name + "."
        try:
            with os.scandir(shard) as it:
                for entry in it:
                    if entry.name.startswith(prefix):
                        return Path(entry.path)
        except FileNotFoundError:
            pass
        return None

    # -- permissions ----------------------------------------------------------
    def uid_gid(self) -> tuple[int, int]:
        """The owner (only when running as root) and group the policy asks for;
        -1 where it asks for nothing or the name is unknown here."""
        uid = gid = -1
        if self.user and os.geteuid() == 0:
            try:
                uid = pwd.getpwnam(self.user).pw_uid
            except KeyError:
                uid = -1
        if self.group:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                gid = -1
        return uid, gid

    def resource_mode(self, is_dir: bool, current: int) -> int:
        """The mode a resource (or a directory inside one) gets from the policy."""
        forbidden = self.umask | (0o222 if self.read_only_resources else 0)
        required = (0o555 if is_dir else 0o444) & ~self.umask
        return (stat.S_IMODE(current) | required) & ~forbidden & 0o7777

    def shard_mode(self) -> int:
        """The mode of ``resources/``, ``staging/`` and shard directories."""
        return (0o777 & ~self.umask) | _SETGID


def _int_umask(value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"invalid umask {value!r} in {CONFIG_NAME}")
    if isinstance(value, int):
        return value & 0o777
    if isinstance(value, str):
        try:
            return int(value, 8) & 0o777
        except ValueError:
            pass
    raise ConfigError(
        f"invalid umask {value!r} in {CONFIG_NAME}: expected an integer or an "
        "octal string such as '027'"
    )


def read_config(path: str | os.PathLike[str]) -> ArchiveConfig:
    """Reads the archive at ``path``. Raises NotFound if it is not an archive and
    ConfigError if its ``nbank.json`` cannot be used."""
    root = Path(path).expanduser()
    fname = root / CONFIG_NAME
    try:
        text = fname.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(
            f"'{root}' is not a neurobank archive (no {CONFIG_NAME}); "
            f"create one with 'nbank init {root}'"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read {fname}: {err.strerror}") from None
    try:
        raw = json.loads(text)
        policy = raw["policy"]
        access = policy.get("access", {})
        registry = raw["registry"]
        if not isinstance(registry, str) or not registry:
            raise TypeError("registry is not a URL")
        return ArchiveConfig(
            path=root.resolve(),
            registry=registry,
            auto_identifiers=bool(policy.get("auto_identifiers", False)),
            auto_id_type=policy.get("auto_id_type"),
            keep_extensions=bool(policy.get("keep_extensions", True)),
            allow_directories=bool(policy.get("allow_directories", False)),
            require_hash=bool(policy.get("require_hash", True)),
            user=access.get("user"),
            group=access.get("group"),
            umask=_int_umask(access.get("umask", DEFAULT_UMASK)),
            read_only_resources=bool(access.get("read_only_resources", True)),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"{fname} is not a valid archive configuration ({type(err).__name__}: "
            f"{err}); restore it from a backup or from another archive's "
            f"{CONFIG_NAME}"
        ) from None


def config_document(
    registry_url: str,
    *,
    user: str | None,
    group: str,
    umask: int,
    read_only_resources: bool = True,
    **policies: Any,
) -> dict[str, Any]:
    """The ``nbank.json`` document the existing client writes, with ``policies``."""
    doc: dict[str, Any] = {
        "$schema": SCHEMA_URL,
        "project": {"name": None, "description": None},
        "owner": {"name": None, "email": None},
        "registry": registry_url,
        "policy": {
            "auto_identifiers": False,
            "auto_id_type": None,
            "keep_extensions": True,
            "allow_directories": False,
            "require_hash": True,
            "access": {
                "user": user,
                "group": group,
                "umask": umask & 0o777,
                "read_only_resources": read_only_resources,
            },
        },
    }
    doc["policy"].update(policies)
    return doc


def existing_files(path: Path) -> list[Path]:
    """The files ``create_archive`` would write that already exist."""
    return [
        path / n for n in _CREATED if (path / n).exists() or (path / n).is_symlink()
    ]


def create_archive(
    path: str | os.PathLike[str],
    registry_url: str,
    *,
    umask: int = DEFAULT_UMASK,
    group: str | None = None,
    shared: bool = False,
    read_only_resources: bool = True,
    **policies: Any,
) -> ArchiveConfig:
    """Creates the archive's directories and files at ``path`` and returns its config.

    Refuses (FileExistsError) if ``nbank.json``, ``README.md`` or ``.gitignore``
    exists. Each file is written atomically; ``nbank.json`` last, so a half-made
    archive is never mistaken for one. Registration is the caller's business.
    """
    root = Path(path).expanduser().resolve()
    if group is None:
        group = grp.getgrgid(os.getgid()).gr_name
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"group '{group}' does not exist on this host") from None
    found = existing_files(root)
    if found:
        raise FileExistsError(f"'{found[0]}' already exists; not overwriting it")
    user = None if shared else pwd.getpwuid(os.getuid()).pw_name
    doc = config_document(
        registry_url,
        user=user,
        group=group,
        umask=umask,
        read_only_resources=read_only_resources,
        **policies,
    )
    root.mkdir(parents=True, exist_ok=True)
    file_mode = 0o666 & ~umask
    dir_mode = (0o777 & ~umask) | _SETGID
    for sub in (RESOURCES, STAGING):
        d = root / sub
        d.mkdir(exist_ok=True)
        _chown(d, -1, gid)
        d.chmod(dir_mode)
    atomic_write_text(root / "README.md", _README, mode=file_mode, gid=gid)
    atomic_write_text(
        root / ".gitignore", "resources/\nstaging/\n", mode=file_mode, gid=gid
    )
    atomic_write_text(
        root / CONFIG_NAME, json.dumps(doc, indent=4) + "\n", mode=file_mode, gid=gid
    )
    return read_config(root)


def _chown(path: Path, uid: int, gid: int) -> None:
    try:
        os.chown(path, uid, gid)
    except PermissionError:
        pass  # not a member of the group: the policy check reports it later
