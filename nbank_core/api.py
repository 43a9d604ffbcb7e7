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
from nbank_core.archive import ArchiveConfig, create_archive, existing_files
from nbank_core.config import resolve_settings
from nbank_core.errors import ConfigError, NotFound
from nbank_core.registry import Registry
from nbank_core.resolve import Located, Resolver
from nbank_core.transaction import deposit

__all__ = [
    "add_datatype",
    "deposit",
    "describe",
    "init_archive",
    "list_archives",
    "list_datatypes",
    "locate",
    "locate_many",
    "open_registry_from",
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
        raise FileExistsError(f"'{found[0]}' already exists; not overwriting it")
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
    resources with that content (at most one: the registry keeps sha1 unique)."""
    try:
        digest = hashing.sha1_path(path)
    except OSError as err:
        raise NotFound(f"cannot read '{path}': {err.strerror}") from None
    with open_registry_from(registry) as reg:
        record = reg.find_sha1(digest)
    return [record] if record is not None else []
