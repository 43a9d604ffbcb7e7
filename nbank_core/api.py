"""The Python interface: what each ``nbank`` command does, as a function.

Each function takes ``registry`` as an open :class:`~nbank_core.registry.Registry`
or a URL (None: ``NBANK_REGISTRY``, else the embedded default; see
:mod:`nbank_core.config`).

>>> import tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> url = "sqlite://" + str(tmp / "r.sqlite")
>>> arch = init_archive(tmp / "my-archive", registry=url)
>>> add_datatype("wav-stimulus", "audio/wav", registry=url)["name"]
'wav-stimulus'
>>> _ = (tmp / "st32_1_2_1.wav").write_bytes(b"RIFF")
>>> [r.id for r in deposit(arch.path, [tmp / "st32_1_2_1.wav"], dtype="wav-stimulus")]
['st32_1_2_1']
>>> locate("st32_1_2_1", registry=url).relative_to(arch.path).as_posix()
'resources/st/st32_1_2_1.wav'
>>> [r["name"] for r in search(registry=url, dtype="wav-stimulus")]
['st32_1_2_1']
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nbank_core import hashing, ids
from nbank_core.archive import (
    CONFIG_NAME,
    ArchiveConfig,
    create_archive,
    existing_files,
    read_config,
)
from nbank_core.config import resolve_settings
from nbank_core.errors import (
    AlreadyExists,
    ConfigError,
    IntegrityError,
    InvalidIdentifier,
    NotFound,
)
from nbank_core.registry import Registry
from nbank_core.resolve import Located, Resolver
from nbank_core.transaction import deposit

__all__ = [
    "add_datatype",
    "deposit",
    "describe",
    "dtype_for_suffix",
    "init_archive",
    "list_archives",
    "list_datatypes",
    "locate",
    "locate_many",
    "open_registry_from",
    "register_archive",
    "registry_info",
    "search",
    "verify",
]

_ARCHIVE_NAME = re.compile(r"[-a-zA-Z0-9_]{1,32}")

RegistryArg = Registry | str | None


@contextlib.contextmanager
def open_registry_from(
    registry: RegistryArg,
    auth: str | tuple[str, str] | None = None,
    *,
    create: bool = False,
) -> Iterator[Registry]:
    """Yields an open registry: ``registry`` itself if it is one (left open),
    else the one its URL, the environment or the default names (closed after;
    ``create``: an embedded registry's file may be made)."""
    if isinstance(registry, Registry):
        yield registry
        return
    reg = resolve_settings(registry, auth=auth).open(create=create)
    try:
        yield reg
    finally:
        reg.close()


def init_archive(
    path: str | os.PathLike[str],
    *,
    registry: RegistryArg = None,
    name: str | None = None,
    auth: str | tuple[str, str] | None = None,
    umask: int = 0o002,
    group: str | None = None,
    shared: bool = False,
    **policies: Any,
) -> ArchiveConfig:
    """Creates an archive at ``path`` and registers it under ``name`` (default: the
    directory's name). The directory is made first; if registration fails, what
    this call created is removed again, so no registered archive lacks its
    directory and no unregistered archive is left behind."""
    root = Path(path).expanduser().resolve()
    name = name or root.name
    if not _ARCHIVE_NAME.fullmatch(name):
        raise ConfigError(
            f"archive name {name!r} must be 1-32 letters, digits, '_' or '-'; "
            "choose one with -n NAME"
        )
    found = existing_files(root)
    if found:
        hint = (
            f"; if it is an archive that moved here, register it again with "
            f"'nbank init --register {root}'"
            if (root / CONFIG_NAME).exists()
            else "; choose an empty directory"
        )
        raise AlreadyExists(f"'{found[0]}' already exists, not overwriting it{hint}")
    made_root = not root.exists()
    with open_registry_from(registry, auth, create=True) as reg:
        if reg.find_archive_by_root(str(root)) is not None:
            raise ConfigError(f"'{root}' is already registered in {reg.url}")
        cfg = create_archive(
            root, reg.url, umask=umask, group=group, shared=shared, **policies
        )
        try:
            reg.add_archive(name, str(root))
        except BaseException:
            _undo_create(root, made_root)
            raise
    return cfg


def register_archive(
    path: str | os.PathLike[str],
    *,
    registry: str | None = None,
    name: str | None = None,
    auth: str | tuple[str, str] | None = None,
) -> tuple[ArchiveConfig, int]:
    """Registers an existing archive at its current root (after it moved) in the
    registry its ``nbank.json`` names, under ``name`` (default: the directory's
    name), and gives every registered resource found in it a location there.
    Returns ``(config, resources located)``. Raises AlreadyExists if an archive is
    already registered at this root, or the name is taken."""
    cfg = read_config(path)
    settings = resolve_settings(registry, archive=cfg, auth=auth)
    name = name or cfg.path.name
    if not _ARCHIVE_NAME.fullmatch(name):
        raise ConfigError(
            f"archive name {name!r} must be 1-32 letters, digits, '_' or '-'; "
            "choose one with -n NAME"
        )
    with settings.open() as reg:
        known = reg.find_archive_by_root(str(cfg.path))
        if known is not None:
            raise AlreadyExists(
                f"the archive at '{cfg.path}' is already registered as "
                f"'{known['name']}' in {reg.url}"
            )
        try:
            reg.add_archive(name, str(cfg.path))
        except AlreadyExists:
            raise AlreadyExists(
                f"an archive named '{name}' is already registered in {reg.url} (at "
                "another root); give this one another name with -n NAME"
            ) from None
        stems = sorted(
            {
                entry.name.partition(".")[0]
                for shard in _dirs(cfg.resources_dir)
                for entry in os.scandir(shard)
            }
        )
        records = reg.get_resources([s for s in stems if _is_id(s)])
        added = 0
        for ident, record in records.items():
            if name not in (record.get("locations") or ()):
                reg.add_location(ident, name)
                added += 1
    return cfg, added


def _dirs(path: Path) -> list[str]:
    try:
        return [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _is_id(text: str) -> bool:
    try:
        ids.validate_id(text)
    except ValueError:  # InvalidIdentifier
        return False
    return True


def _undo_create(root: Path, made_root: bool) -> None:
    if made_root:
        shutil.rmtree(root, ignore_errors=True)
        return
    for p in (root / "nbank.json", root / "README.md", root / ".gitignore"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    for d in (root / "resources", root / "staging"):
        with contextlib.suppress(OSError):
            d.rmdir()


def registry_info(registry: RegistryArg = None) -> dict[str, Any]:
    """Returns the registry's ``{"name", "version", "api_version", "url"}``."""
    with open_registry_from(registry) as reg:
        return {**reg.info(), "url": reg.url}


def list_datatypes(registry: RegistryArg = None) -> list[dict[str, Any]]:
    """Returns every registered datatype."""
    with open_registry_from(registry) as reg:
        return reg.list_datatypes()


def add_datatype(
    name: str,
    content_type: str,
    extension: str | None = None,
    *,
    registry: RegistryArg = None,
    auth: str | tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Registers a datatype (``name``, MIME ``content_type``, default extension)."""
    with open_registry_from(registry, auth) as reg:
        return reg.add_datatype(name, content_type, extension)


def dtype_for_suffix(suffix: str, *, registry: RegistryArg = None) -> str:
    """The one registered datatype whose ``extension`` is ``suffix`` (``.csv`` or
    ``csv``); ConfigError naming the candidates when there is none or several.

    >>> import tempfile, pathlib
    >>> url = "sqlite://" + str(pathlib.Path(tempfile.mkdtemp()) / "r.sqlite")
    >>> _ = init_archive(pathlib.Path(url[9:]).parent / "a", registry=url)
    >>> _ = add_datatype("spike-times", "text/csv", "csv", registry=url)
    >>> dtype_for_suffix(".csv", registry=url)
    'spike-times'
    """
    ext = suffix.lstrip(".").lower()
    with open_registry_from(registry) as reg:
        found = [
            d["name"]
            for d in reg.list_datatypes()
            if ext and (d.get("extension") or "").lstrip(".").lower() == ext
        ]
        url = reg.url
    if len(found) == 1:
        return found[0]
    if not ext:
        raise ConfigError(
            "an output without an extension needs its datatype named (dtype=...): "
            f"the registry {url} cannot tell it from the file name"
        )
    what = f"'.{ext}'"
    if not found:
        raise ConfigError(
            f"no datatype registered in {url} has the extension {what}: name the "
            "datatype of the outputs (dtype=...), or register one with 'nbank dtype "
            "add NAME CONTENT_TYPE -e EXT'"
        )
    raise ConfigError(
        f"several datatypes registered in {url} have the extension {what} "
        f"({', '.join(sorted(found))}): name the datatype of the outputs (dtype=...)"
    )


def list_archives(registry: RegistryArg = None, **filters: str) -> list[dict[str, Any]]:
    """Returns the registered archives (``name`` prefix, ``scheme``, ``root``)."""
    with open_registry_from(registry) as reg:
        return reg.list_archives(**filters)


def locate_many(
    names: Iterable[str], *, registry: RegistryArg = None
) -> dict[str, Located]:
    """Returns ``{id: Located}`` for the registered ids among ``names``, using
    bulk registry requests."""
    with open_registry_from(registry) as reg:
        return Resolver(reg).locate_many(names)


def locate(name: str, *, registry: RegistryArg = None) -> Path:
    """Returns the archived file of ``name`` (an id, ``nbank:`` form or full URL);
    a full URL names its own registry. Raises NotFound saying why not."""
    base, ident = ids.parse_identifier(name)
    with open_registry_from(base or registry) as reg:
        return Resolver(reg).path(ident)


def describe(names: Iterable[str], *, registry: RegistryArg = None) -> list[dict]:
    """Returns the registry records of ``names`` (bulk); raises NotFound naming the
    ids that are not registered."""
    wanted = [ids.parse_identifier(n)[1] for n in names]
    with open_registry_from(registry) as reg:
        found = reg.get_resources(wanted)
        missing = [n for n in wanted if n not in found]
        if missing:
            raise NotFound(f"not registered in {reg.url}: {', '.join(missing)}")
        return [found[n] for n in wanted]


def search(registry: RegistryArg = None, **filters: Any) -> Iterator[dict[str, Any]]:
    """Yields registered resources matching django-neurobank's filters; ``dtype`` is
    matched exactly here (the server matches substrings)."""
    exact_dtype = filters.get("dtype")
    with open_registry_from(registry) as reg:
        for record in reg.search(**filters):
            if exact_dtype is None or record.get("dtype") == exact_dtype:
                yield record


def verify(
    path: str | os.PathLike[str], *, registry: RegistryArg = None
) -> list[dict[str, Any]]:
    """Hashes the file (or directory) at ``path`` and returns the registered
    resources with that content: the source with that sha1 (the registry keeps
    it unique), else the derived outputs whose metadata records it.

    A file named like a registered id (``<id>`` or ``<id>.<ext>``) is checked
    against that id's record first: if the record has a hash that the content
    does not match, IntegrityError says what was expected and found, even when
    the content is another resource's.
    """
    try:
        digest = hashing.sha1_path(path)
    except OSError as err:
        raise NotFound(f"cannot read '{path}': {err.strerror}") from None
    try:  # ids never hold '.': the name up to the first one
        named: str | None = ids.validate_id(Path(path).name.partition(".")[0])
    except InvalidIdentifier:
        named = None
    with open_registry_from(registry) as reg:
        own = reg.get_resources([named]).get(named) if named is not None else None
        expected = hashing.record_sha1(own)
        if expected is not None and expected != digest:
            record = reg.find_sha1(digest)
            other = f", the content of '{record['name']}'" if record else ""
            raise IntegrityError(
                f"{path}: FAILED: named like the resource '{named}', whose "
                f"registered sha1 is {expected}, but its content has sha1 "
                f"{digest}{other}; it is not '{named}': restore it from the "
                f"archive ('nbank locate {named}') or rename it"
            )
        if expected is not None:
            return [own]
        record = reg.find_sha1(digest)
        if record is not None:
            return [record]
        # derived outputs keep their hash in metadata, where it need not be unique
        key = f"metadata__{hashing.CONTENT_KEY}"
        return list(reg.search(**{key: digest}))
