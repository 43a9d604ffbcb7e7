"""Which registry a filesystem uses, decided before fsspec caches the instance.

fsspec keeps one filesystem per set of constructor arguments. The registry URL is
resolved first (explicit, else ``NBANK_REGISTRY``, else the archive's, else the
embedded default) and put among those arguments, so that an instance made under one
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

from nbank_core import Settings, read_config

__all__ = ["ResolvingCached", "registry_url"]

ENV_REGISTRY = "NBANK_REGISTRY"


def registry_url(
    registry: str | None = None, archive: str | os.PathLike[str] | None = None
) -> str:
    """The registry a filesystem uses: ``registry``, else ``NBANK_REGISTRY``, else the
    one in ``archive``'s ``nbank.json``, else the embedded default.
    """
    if not registry and archive is not None and not os.environ.get(ENV_REGISTRY):
        registry = read_config(archive).registry
    return Settings.from_env(registry=registry).registry


class ResolvingCached(_Cached):
    """Resolves the registry URL before fsspec computes an instance's cache key, so
    an instance made under one ``NBANK_REGISTRY`` is not reused under another, and
    ``storage_options`` (what pickles carry to dask workers) name it explicitly."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs = apply_config(cls, kwargs)
        kwargs["registry"] = registry_url(kwargs.get("registry"), kwargs.get("archive"))
        return super().__call__(*args, **kwargs)
