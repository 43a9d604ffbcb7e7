"""Is a path on a network filesystem? SQLite's file locking is unsafe there.

The embedded registry is one machine's tool: on NFS, SMB/CIFS or SSHFS several
hosts can write its file at once and corrupt it. :func:`warn_if_network` says so
once per file (a ``logging`` warning, which the ``nbank`` command shows) and points
to ``nbank registry copy``. The filesystem type comes from the mount table
(``/proc/self/mountinfo``, else ``/proc/mounts``); where there is none (not
Linux), nothing is said.

>>> table = "36 1 0:32 / /mnt/lab rw - nfs4 server:/lab rw\\n"
>>> filesystem_type("/mnt/lab/registry.sqlite", mountinfo=table)
'nfs4'
>>> is_network_filesystem("/mnt/lab/registry.sqlite", mountinfo=table)
True
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["NETWORK_TYPES", "filesystem_type", "is_network_filesystem"]

log = logging.getLogger(__name__)

#: filesystem types (as the mount table names them) that are reached over a network
NETWORK_TYPES = frozenset(
    {
        *("nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "sshfs"),
        *("fuse.sshfs", "9p", "afs", "ceph", "fuse.ceph", "glusterfs"),
        *("fuse.glusterfs", "lustre", "gpfs", "davfs", "fuse.davfs2", "ncpfs"),
        *("coda", "fuse.rclone", "beegfs", "ocfs2", "gfs2", "fuse.s3fs"),
    }
)
_TABLES = ("/proc/self/mountinfo", "/proc/mounts")
_warned: set[str] = set()
_lock = threading.Lock()


def _unescape(field: str) -> str:
    """Mount points in the table escape space, tab, newline and backslash as
    octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts(text: str) -> list[tuple[str, str]]:
    """``(mount point, type)`` of each line of a mountinfo or mounts table."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if " - " in line and len(fields) >= 7:  # mountinfo
            tail = line.split(" - ", 1)[1].split()
            if tail:
                found.append((_unescape(fields[4]), tail[0]))
        elif len(fields) >= 3:  # /proc/mounts, fstab-like
            found.append((_unescape(fields[1]), fields[2]))
    return found


def _table() -> str | None:
    for name in _TABLES:
        try:
            with open(name, encoding="utf-8", errors="replace") as fp:
                return fp.read()
        except OSError:
            continue
    return None


def filesystem_type(
    path: str | os.PathLike[str], *, mountinfo: str | None = None
) -> str | None:
    """The type of the filesystem holding ``path`` (or its nearest existing
    parent): the mount whose point is the longest prefix of its real path. None
    if there is no mount table. ``mountinfo`` replaces the system's table (text
    of ``/proc/self/mountinfo`` or ``/proc/mounts``), for tests."""
    text = _table() if mountinfo is None else mountinfo
    if text is None:
        return None
    real = os.path.realpath(os.fspath(path))
    best, kind = -1, None
    for point, fstype in _mounts(text):
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fstype
    return kind


def is_network_filesystem(
    path: str | os.PathLike[str], *, mountinfo: str | None = None
) -> bool:
    """True if ``path`` is on a filesystem of :data:`NETWORK_TYPES`."""
    kind = filesystem_type(path, mountinfo=mountinfo)
    return kind is not None and kind.lower() in NETWORK_TYPES


def warn_if_network(
    path: str | os.PathLike[str], *, mountinfo: str | None = None
) -> bool:
    """Warns once per process and file if the embedded registry at ``path`` is on
    a network filesystem; returns True if it is."""
    kind = filesystem_type(path, mountinfo=mountinfo)
    if kind is None or kind.lower() not in NETWORK_TYPES:
        return False
    key = os.path.realpath(os.fspath(path))
    with _lock:
        if key in _warned:
            return True
        _warned.add(key)
    log.warning(
        "the embedded registry %s is on a network filesystem (%s), where SQLite's "
        "locking is unsafe: two hosts writing it at once can corrupt it. Use it "
        "from one host only, or move to a django-neurobank server with 'nbank "
        "registry copy %s http://HOST/neurobank/'",
        key,
        kind,
        "sqlite://" + key,
    )
    return True
