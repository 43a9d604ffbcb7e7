"""Exporting resources from the archives on this host to a tar file, a zip file or
a directory (``nbank export``), each checked against its registered hash.

A tar or zip file is written to a temp file beside it and renamed into place
when complete (never over an existing file); into a directory, each resource is
published on its own, no-clobber. With ``manifest``, the registry records of
what was written (without locations) are added last, as ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nbank_core import __version__, hashing
from nbank_core.api import RegistryArg, open_registry_from
from nbank_core.copy import Source, find_sources
from nbank_core.errors import AlreadyExists, ConfigError, IntegrityError
from nbank_core.fsutil import atomic_output
from nbank_core.receive import write_file

__all__ = ["MANIFEST", "Exported", "export"]

MANIFEST = "manifest.json"


@dataclasses.dataclass
class Exported:
    """``status``: ``exported`` (as ``member``) or ``failed`` (``error``)."""

    id: str
    status: str
    member: str | None = None
    error: str | None = None


def export(
    names: Iterable[str],
    out: str | os.PathLike[str],
    *,
    archive: str | None = None,
    compress: bool = False,
    manifest: bool = False,
    registry: RegistryArg = None,
) -> list[Exported]:
    """Writes each resource of ``names`` (read from an archive on this host;
    ``archive``: only from that one) to ``out``: a ``.tar`` (``.tar.gz``, ...)
    file, a ``.zip`` file (``compress``: deflated) or a directory (any other
    name). Resources that cannot be read or do not match their hash are left out
    and reported."""
    out = Path(out)
    kind = _kind(out)
    if compress and kind != "zip":
        raise ConfigError("--compress only applies to zip files")
    if kind != "dir" and os.path.lexists(out):
        raise AlreadyExists(f"'{out}' already exists, not overwriting it")
    with open_registry_from(registry) as reg:
        sources = find_sources(reg, names, archive=archive)
        url = reg.url
    results = [Exported(s.id, "failed", error=s.error) for s in sources if not s.path]
    good = [s for s in sources if s.path is not None]
    if manifest and any(s.path.name == MANIFEST for s in good):
        raise ConfigError(f"a resource is stored as {MANIFEST}: no manifest possible")
    if not good:
        return results
    if kind == "dir":
        out.mkdir(parents=True, exist_ok=True)
        if manifest and os.path.lexists(out / MANIFEST):
            raise AlreadyExists(f"'{out / MANIFEST}' already exists")
        done = [_to_dir(s, out) for s in good]
    else:
        done = _to_file(good, out, kind, compress, manifest, url)
    if manifest and kind == "dir":
        data = _manifest(good, done, url)
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=out)
        with open(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        try:
            os.link(tmp, out / MANIFEST)
        finally:
            os.unlink(tmp)
    return results + done


def _kind(out: Path) -> str:
    name = out.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if any(
        name.endswith(e) for e in (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
    ):
        return "tar"
    return "dir"


def _to_dir(s: Source, out: Path) -> Exported:
    assert s.path is not None
    try:
        if s.path.is_dir():
            raise ConfigError("directory resources export to a tar or zip file only")
        write_file(s.path, out / s.path.name, sha1=s.sha1)
    except (OSError, IntegrityError, ConfigError) as err:
        return Exported(s.id, "failed", error=str(err))
    return Exported(s.id, "exported", s.path.name)


def _to_file(
    good: list[Source], out: Path, kind: str, compress: bool, manifest: bool, url: str
) -> list[Exported]:
    done: list[Exported] = []
    try:
        with atomic_output(out) as fp:
            if kind == "zip":
                method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
                with zipfile.ZipFile(fp, "w", method, allowZip64=True) as zf:
                    for s in good:
                        done.append(_checked(s, lambda p, n: zf.write(p, n)))
                    if manifest:
                        zf.writestr(MANIFEST, _manifest(good, done, url))
            else:
                mode = "w:" + (out.suffix.lstrip(".").replace("tgz", "gz") or "")
                mode = mode if mode in ("w:gz", "w:bz2", "w:xz") else "w"
                with tarfile.open(fileobj=fp, mode=mode) as tf:
                    for s in good:
                        done.append(_checked(s, lambda p, n: tf.add(p, n)))
                    if manifest:
                        data = _manifest(good, done, url)
                        info = tarfile.TarInfo(MANIFEST)
                        info.size, info.mode = len(data), 0o644
                        tf.addfile(info, io.BytesIO(data))
    except FileExistsError:
        raise AlreadyExists(f"'{out}' already exists, not overwriting it") from None
    return done


def _checked(s: Source, add: Any) -> Exported:
    """Hashes the stored copy, then adds it; a copy that does not match its
    registered hash is left out."""
    assert s.path is not None
    try:
        got = hashing.sha1_path(s.path)
        if s.sha1 is not None and got != s.sha1:
            return Exported(
                s.id, "failed", error=f"sha1 {got} does not match the registry's"
            )
        add(str(s.path), s.path.name)
    except OSError as err:
        return Exported(s.id, "failed", error=str(err))
    return Exported(s.id, "exported", s.path.name)


def _manifest(good: list[Source], done: list[Exported], url: str) -> bytes:
    by_id = {s.id: s for s in good}
    resources = []
    for e in done:
        if e.status != "exported":
            continue
        s = by_id[e.id]
        entry: dict[str, Any] = {"name": e.id, "path": e.member, "sha1": s.sha1}
        entry.update((k, v) for k, v in (s.record or {}).items() if k != "locations")
        resources.append(entry)
    doc = {
        "registry": url,
        "exported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nbank_version": __version__,
        "resources": resources,
    }
    return (json.dumps(doc, indent=2) + "\n").encode()
