"""Checking the registry itself (``nbank check registry``): resources with no
location, which nothing on disk vouches for, and archives that hold nothing.

>>> import tempfile, pathlib
>>> url = "sqlite://" + str(pathlib.Path(tempfile.mkdtemp()) / "r.sqlite")
>>> from nbank_core.api import init_archive
>>> _ = init_archive(pathlib.Path(url[9:]).parent / "empty", registry=url)
>>> [(f.kind, f.name) for f in check_registry(url)]
[('empty-archive', 'empty')]
"""

from __future__ import annotations

import dataclasses

from nbank_core.api import RegistryArg, open_registry_from

__all__ = ["RegistryFinding", "check_registry"]


@dataclasses.dataclass(frozen=True)
class RegistryFinding:
    """``kind`` is ``no-location`` (a resource: an error) or ``empty-archive``
    (an archive: a warning); ``name`` names it."""

    kind: str
    name: str

    @property
    def is_error(self) -> bool:
        return self.kind == "no-location"


def check_registry(registry: RegistryArg = None) -> list[RegistryFinding]:
    """Returns the resources without locations, then the archives without
    resources."""
    with open_registry_from(registry) as reg:
        out = [
            RegistryFinding("no-location", r["name"])
            for r in reg.search(has_location="false")
        ]
        for archive in reg.list_archives():
            if next(reg.search(archive=archive["name"]), None) is None:
                out.append(RegistryFinding("empty-archive", archive["name"]))
    return out
