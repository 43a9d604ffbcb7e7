"""``UPath("nbank://ID")``: resources as pathlib-style objects.

Shipped under the ``universal_pathlib.implementations`` entry point; importing this
module also registers :class:`~nbank_fsspec.NbankFileSystem` with fsspec, so
universal-pathlib finds the filesystem class already loaded and does not warn.

>>> from upath import UPath
>>> p = UPath("nbank://st32_1_2_1", registry="sqlite:///:memory:")
>>> type(p).__name__, p.name, str(p)
('NbankPath', 'st32_1_2_1', 'nbank://st32_1_2_1')
"""

from __future__ import annotations

import fsspec
from upath import UPath

from nbank_fsspec.filesystem import NbankFileSystem

__all__ = ["NbankPath"]

fsspec.register_implementation("nbank", NbankFileSystem, clobber=True)


class NbankPath(UPath):
    """A path in an ``nbank://`` filesystem: ``read_bytes()``, ``open()``,
    ``exists()``, ``stat()`` and ``write_bytes()`` (which deposits) work as on
    files; ids have no parents or children."""

    __slots__ = ()
