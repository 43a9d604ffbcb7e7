"""An fsspec filesystem for neurobank: ``nbank://<id>`` opens a registered resource.

Registered through the ``fsspec.specs`` entry point, so after installation
``fsspec.open("nbank://st32_1_2_1")``, ``pd.read_csv("nbank://st32_1_2_1")`` and
``UPath("nbank://st32_1_2_1")`` work with no import. See
:mod:`nbank_fsspec.filesystem` for reading and :mod:`nbank_fsspec.writing` for
depositing.

>>> import fsspec
>>> fsspec.get_filesystem_class("nbank").__name__
'NbankFileSystem'
"""

from __future__ import annotations

from typing import Any

from nbank_fsspec.archived import ArchivedFile
from nbank_fsspec.download import RemoteFile
from nbank_fsspec.errors import ResourceImmutable
from nbank_fsspec.filesystem import NbankFileSystem
from nbank_fsspec.settings import registry_url
from nbank_fsspec.writing import DepositFile, DepositTransaction, deposit_files

__all__ = [
    "ArchivedFile",
    "DepositFile",
    "DepositTransaction",
    "NbankFileSystem",
    "NbankPath",
    "RemoteFile",
    "ResourceImmutable",
    "deposit_files",
    "registry_url",
]


def __getattr__(name: str) -> Any:
    """Imports :class:`~nbank_fsspec.upath.NbankPath` (and universal-pathlib) on
    first use only."""
    if name == "NbankPath":
        from nbank_fsspec.upath import NbankPath

        return NbankPath
    raise AttributeError(f"module 'nbank_fsspec' has no attribute {name!r}")
