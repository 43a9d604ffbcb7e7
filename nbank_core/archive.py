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
import re
import stat
import sys
from pathlib import Path
from typing import Any

from nbank_core.errors import ConfigError, IntegrityError, NotFound
from nbank_core.fsutil import atomic_write_text
from nbank_core.ids import validate_id

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


#: what may follow an id in its file name: one or more ``.suffix`` of letters,
#: digits, '_' and '-' (``id.wav``, and ``id.tar.gz`` for multi-part extensions)
_SUFFIXES = re.compile(r"(?:\.[A-Za-z0-9_-]+)+")


def check_filename(name: str, filename: object) -> str:
    """Returns ``filename`` if it can be the file name of resource ``name`` in an
    archive: one path component, ``name`` itself or ``name`` followed by suffixes
    (``name.ext``, ``name.tar.gz``). Raises IntegrityError otherwise, so that no
    registry answer (``/etc/passwd``, ``../x``) names a file outside the shard.

    >>> check_filename("st32_1", "st32_1.wav")
    'st32_1.wav'
    >>> check_filename("st32_1", "../../etc/passwd")
    Traceback (most recent call last):
    ...
    nbank_core.errors.IntegrityError: the registry gave '../../etc/passwd' as ...
    """
    if isinstance(filename, str) and (
        filename == name
        or (
            filename.startswith(name)
            and _SUFFIXES.fullmatch(filename, len(name)) is not None
        )
    ):
        return filename
    raise IntegrityError(
        f"the registry gave {filename!r} as the file name of '{name}', which is "
        f"not a file name in an archive ('{name}' or '{name}.<ext>'); refusing "
        "it: ask the registry's administrator to correct the record"
    )


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
        extension). Each is one ``stat``; no directory is listed. Raises
        IntegrityError if ``filename`` is not a file name of ``name`` in an archive
        (see :func:`check_filename`): registry answers never lead out of the shard.
        """
        validate_id(name)
        shard = self.shard_dir(name)
        if filename is not None:
            check_filename(name, filename)
        names = [filename, name] if filename and filename != name else [name]
        return [shard / n for n in names]

    def find_file(self, name: str, filename: str | None = None) -> Path | None:
        """Returns the stored file of ``name``, or None.

        Tries the predicted names (one ``stat`` each), then lists the shard
        directory for ``<name>.*`` only if none matched: an extension other than
        the datatype's costs one scan, a hit never does. A file found is returned
        only if it stays in its shard (:meth:`confined`).
        """
        for path in self.candidate_paths(name, filename):
            found = self.stored(name, path)
            if found is not None:
                return found
        shard = self.shard_dir(name)
        prefix = name + "."
        try:
            with os.scandir(shard) as it:
                for entry in it:
                    if entry.name.startswith(prefix):
                        return self.confined(name, Path(entry.path))
        except FileNotFoundError:
            pass
        return None

    def stored(self, name: str, path: Path) -> Path | None:
        """``path`` (a candidate of :meth:`candidate_paths`) if something is there,
        else None: one ``lstat``, and :meth:`confined`'s checks only for a
        symbolic link."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return self.confined(name, path) if stat.S_ISLNK(st.st_mode) else path

    def confined(self, name: str, path: Path) -> Path:
        """Returns ``path`` (a file of ``name`` in its shard) if it resolves inside
        that shard; raises IntegrityError if it is, or passes through, a symbolic
        link that leads out of it. A name directly in the shard that is not a link
        resolves inside it whatever the shard resolves to: one ``lstat``; else two
        ``realpath``."""
        shard = self.shard_dir(name)
        if path.parent == shard and not os.path.islink(path):
            return path
        real = Path(os.path.realpath(path))
        real_shard = Path(os.path.realpath(shard))
        if real.parent != real_shard and real_shard not in real.parents:
            raise IntegrityError(
                f"the file of '{name}' at '{path}' is a symbolic link to '{real}', "
                f"outside '{shard}'; refusing to follow it out of the archive: "
                "replace the link with the file itself"
            )
        return path

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


def _int_umask(value: Any, where: str = f"{CONFIG_NAME}: policy.access.umask") -> int:
    """A umask as the existing client writes it (a decimal int, 2 for 0o002) or an
    octal string ('027'); anything outside 0..0o777 is refused, not truncated."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip():
        try:
            number = int(value.strip(), 8)
        except ValueError:
            number = None
    if number is not None and 0 <= number <= 0o777:
        return number
    octal_digits = isinstance(value, int) and set(str(value)) <= set("01234567")
    hint = (
        f" (for the octal {value}, write the decimal {int(str(value), 8)} or the "
        f'string "{value}")'
        if octal_digits and value > 0o777 and int(str(value), 8) <= 0o777
        else ""
    )
    raise ConfigError(
        f"{where} must be a umask from 0 to 0o777, written as a decimal integer "
        f'(18 for 022) or an octal string ("022"), not {_shown(value)}{hint}; '
        "correct it in that file"
    )


def _shown(value: Any) -> str:
    """A JSON value as a message shows it: short, on one line."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flag(fname: Path, section: dict[str, Any], field: str, default: bool) -> bool:
    """A true/false policy (absent or null: ``default``); ``field`` is its dotted
    name in the document."""
    value = section.get(field.rpartition(".")[2], default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(
            f"{fname}: {field} must be true or false, not {_shown(value)}; "
            "correct it in that file"
        )
    return value


def _account(fname: Path, access: dict[str, Any], key: str) -> str | None:
    """``policy.access.user`` or ``group``: None, or a name known on this host."""
    value = access.get(key)
    if value is None:
        return None
    what = "user" if key == "user" else "group"
    where = f"{fname}: policy.access.{key}"
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{where} must be a {what} name (a string) or null, not "
            f"{_shown(value)}; correct it in that file"
        )
    try:
        (pwd.getpwnam if key == "user" else grp.getgrnam)(value)
    except KeyError:
        raise ConfigError(
            f"{where} is '{value}', which is not a {what} on this host: create "
            f"the {what} here or name one that exists in that file"
        ) from None
    return value


def read_config(path: str | os.PathLike[str]) -> ArchiveConfig:
    """Reads the archive at ``path``. Raises NotFound if it is not an archive and
    ConfigError, naming the field, if its ``nbank.json`` cannot be used (wrong
    types, a umask outside 0..0o777, a user or group unknown on this host)."""
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
    except ValueError as err:
        raise ConfigError(
            f"{fname} is not a valid archive configuration (not JSON: {err}); "
            f"restore it from a backup or from another archive's {CONFIG_NAME}"
        ) from None

    def need(ok: bool, field: str, expected: str, value: Any) -> None:
        if not ok:
            raise ConfigError(
                f"{fname}: {field} must be {expected}, not {_shown(value)}; "
                f"correct it in that file (or restore it from another archive's "
                f"{CONFIG_NAME})"
            )

    need(isinstance(raw, dict), "the document", "a JSON object", raw)
    registry = raw.get("registry")
    need(isinstance(registry, str) and bool(registry), "registry", "a URL", registry)
    policy = raw.get("policy")
    need(isinstance(policy, dict), "policy", "an object", policy)
    access = policy.get("access", {})
    need(isinstance(access, dict), "policy.access", "an object", access)
    id_type = policy.get("auto_id_type")
    need(
        id_type is None or isinstance(id_type, str),
        "policy.auto_id_type",
        "a string or null",
        id_type,
    )

    return ArchiveConfig(
        path=root.resolve(),
        registry=registry,
        auto_identifiers=_flag(fname, policy, "policy.auto_identifiers", False),
        auto_id_type=id_type,
        keep_extensions=_flag(fname, policy, "policy.keep_extensions", True),
        allow_directories=_flag(fname, policy, "policy.allow_directories", False),
        require_hash=_flag(fname, policy, "policy.require_hash", True),
        user=_account(fname, access, "user"),
        group=_account(fname, access, "group"),
        umask=_int_umask(
            access.get("umask", DEFAULT_UMASK), f"{fname}: policy.access.umask"
        ),
        read_only_resources=_flag(
            fname, access, "policy.access.read_only_resources", True
        ),
        raw=raw,
    )


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
