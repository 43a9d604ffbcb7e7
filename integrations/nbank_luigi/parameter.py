"""``ResourceIdParameter``: a task parameter holding a resource id, normalised so
that every way of writing one id gives the same task id.

Any form of the core's query syntax (:func:`nbank_core.parse_query`):
``st32_1``, ``nbank:st32_1``, ``nbank://st32_1``, ``st32_1.wav`` and the full URL
``<registry>/resources/st32_1/`` of the configured registry all become
``st32_1`` (an extension names a file, not the resource); a full URL of
another registry is kept whole (canonical form), so the target made from it asks
that registry.

>>> ResourceIdParameter().normalize("nbank://st32_1")
'st32_1'
"""

from __future__ import annotations

from typing import Any

import luigi

from nbank_core import canonical_url, full_url, parse_query, same_registry
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
        query = parse_query(str(x))  # InvalidIdentifier is a ValueError
        if query.registry is None:
            return query.id
        if same_registry(query.registry, resolve_settings().registry):
            return query.id
        return full_url(canonical_url(query.registry), query.id)
