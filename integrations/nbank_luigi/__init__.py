"""Luigi integration of neurobank: resources as targets, outputs deposited into an
archive and registered, with their provenance.

>>> from nbank_luigi import NbankTarget, NbankTask, NbankResource
>>> issubclass(NbankResource, __import__("luigi").ExternalTask)
True

See :mod:`nbank_luigi.task` for a complete task, :mod:`nbank_luigi.config` for
the ``[nbank]`` settings and :mod:`nbank_luigi.lookup` for how completeness is
checked in bulk.
"""

from nbank_luigi.config import SettingsError, nbank
from nbank_luigi.lookup import clear_cache, prefetch
from nbank_luigi.parameter import ResourceIdParameter
from nbank_luigi.target import NbankTarget
from nbank_luigi.task import NbankResource, NbankTask
from nbank_luigi.writer import DepositingFile

__all__ = [
    "DepositingFile",
    "NbankResource",
    "NbankTarget",
    "NbankTask",
    "ResourceIdParameter",
    "SettingsError",
    "clear_cache",
    "nbank",
    "prefetch",
]
