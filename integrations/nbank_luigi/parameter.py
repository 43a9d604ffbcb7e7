"""``ResourceIdParameter``: a task parameter holding a resource id, normalised so
that every way of writing one id gives the same task id.

``st32_1``, ``nbank:st32_1``, ``nbank://st32_1`` and the full URL
``<registry>/resources/st32_1/`` of the configured registry all become
``st32_1``; a full URL of another registry is kept whole (canonical form), so
the target made from it asks that registry.

>>> ResourceIdParameter().normalize("nbank://st32_1")
'st32_1'
"""

from __future__ import annotations

from typing import Any

import luigi

from nbank_core import full_url, parse_identifier
from nbank_luigi.config import resolve_settings

__all__ = ["ResourceIdParameter"]


class ResourceIdParameter(luigi.Parameter):
    """A resource id in any written form; invalid ids fail when the task is made.

    Example::

        class Spikes(NbankTask):
            unit = ResourceIdParameter()   # --unit st32_1 or --unit nbank://st32_1
    """

    def normalize(self, x: Any) -> Any:
        if x is None:
            return None
        base, ident = parse_identifier(str(x))  # InvalidIdentifier is a ValueError
        if base is None:
            return ident
        configured = resolve_settings()[0].registry
        if base.rstrip("/") == configured.rstrip("/"):
            return ident
        return full_url(base, ident)
