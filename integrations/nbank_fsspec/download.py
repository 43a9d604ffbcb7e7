"""Files read from the registry, for resources no archive on this host holds.

The bytes come through the registry's own download methods
(:meth:`nbank_core.Registry.read_download` and ``download_size``): anonymous,
retried, with the registry's errors. django-neurobank ignores ``Range`` (the whole
file comes back), so a file up to ``SMALL`` bytes is read whole when opened and
served from memory; a larger one is read block by block.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractBufferedFile

from nbank_core import Registry

__all__ = ["SMALL", "RemoteFile"]

#: files up to this size are read whole when opened
SMALL = 4 << 20


class RemoteFile(AbstractBufferedFile):
    """A read-only file over the registry's copy of resource ``path``, fetched
    block by block on demand (or served from ``data`` when read whole)."""

    def __init__(
        self,
        fs: Any,
        path: str,
        registry: Registry,
        size: int,
        data: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        self.registry = registry
        if data is not None:
            kwargs.update(cache_type="all", cache_options={"data": data})
        super().__init__(fs, path, mode="rb", size=size, **kwargs)

    @property
    def name(self) -> str:
        raise AttributeError(
            f"'{self.path}' has no local path: it is read from the registry at "
            f"{self.registry.url}; mount its archive on this host to open it locally"
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.registry.read_download(self.path, start, end)
