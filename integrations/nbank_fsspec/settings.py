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

ENV_REGISTRY = "NBANK_REGISTRY"  # read by nbank_core.resolve_settings
#: registry URLs already resolved without an archive, by (explicit, NBANK_REGISTRY)
_resolved: dict[tuple[str | None, str | None], str] = {}


def registry_url(
    registry: str | None = None, archive: str | os.PathLike[str] | None = None
) -> str:
    """The registry a filesystem given ``registry`` and ``archive`` uses.

    Without an archive the answer depends only on ``registry`` and
    ``NBANK_REGISTRY``, so it is worked out (and the URL checked) once per pair:
    ``pd.read_csv("nbank://ID")`` makes a filesystem for every file it reads."""
    if archive is not None:
        return resolve_settings(registry, archive=archive).registry
    key = (registry, os.environ.get(ENV_REGISTRY))
    if key == (None, None):  # the default: it depends on more of the environment
        return resolve_settings().registry
    url = _resolved.get(key)
    if url is None:
        url = resolve_settings(registry).registry
        if len(_resolved) > 64:
            _resolved.clear()
        _resolved[key] = url
    return url


class ResolvingCached(_Cached):
    """Resolves the registry URL before fsspec computes an instance's cache key."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs = apply_config(cls, kwargs)
        kwargs["registry"] = registry_url(kwargs.get("registry"), kwargs.get("archive"))
        return super().__call__(*args, **kwargs)
