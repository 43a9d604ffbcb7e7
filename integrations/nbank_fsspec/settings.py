"""Which registry a filesystem uses, decided before fsspec caches the instance.

The rule is the core's one (:func:`nbank_core.resolve_settings`): with an
``archive``, the registry its ``nbank.json`` names (``NBANK_REGISTRY`` is ignored
then, and an explicit ``registry`` that differs is a ValueError when the filesystem
is made); without one, ``registry``, else ``NBANK_REGISTRY``, else the embedded
default.

fsspec keeps one filesystem per set of constructor arguments. The resolved registry
URL is put among those arguments, so that an instance made under one
``NBANK_REGISTRY`` is not reused under another, and ``storage_options`` (what
pickles carry to dask workers) always name the registry explicitly.

>>> registry_url("http://host/neurobank/")
'http://host/neurobank/'
"""

from __future__ import annotations

import os
from typing import Any

from fsspec.config import apply_config
from fsspec.spec import _Cached

from nbank_core import resolve_settings

__all__ = ["ResolvingCached", "registry_url"]


def registry_url(
    registry: str | None = None, archive: str | os.PathLike[str] | None = None
) -> str:
    """The registry a filesystem given ``registry`` and ``archive`` uses."""
    return resolve_settings(registry, archive=archive).registry


class ResolvingCached(_Cached):
    """Resolves the registry URL before fsspec computes an instance's cache key."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs = apply_config(cls, kwargs)
        kwargs["registry"] = registry_url(kwargs.get("registry"), kwargs.get("archive"))
        return super().__call__(*args, **kwargs)
