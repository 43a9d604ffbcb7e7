"""Provenance: the metadata every engine records with the outputs it deposits.

One schema for Snakemake, luigi and fsspec, flat so that each key can be searched
with ``nbank search -k KEY=VALUE`` (django-neurobank filters top-level metadata):

- ``engine``: ``snakemake``, ``luigi``, ...;
- ``engine_version``: the engine's version;
- ``step``: the rule (Snakemake) or task family (luigi) that made the output;
- ``inputs``: the ids of the inputs it read from the registry, in order; an input
  from another registry is written as its full identifier URL;
- ``parameters``: the step's parameters that identify it (wildcards, significant
  task parameters), a JSON object.

Keys an engine does not know are left out; metadata the user gives is kept, and a
user key of the same name wins.

>>> provenance("luigi", step="Spikes", inputs=["st32_1"], engine_version="3.8")
{'engine': 'luigi', 'engine_version': '3.8', 'step': 'Spikes', 'inputs': ['st32_1']}
>>> input_ref("st32_1", "http://a/neurobank/", "http://b/neurobank/")
'http://a/neurobank/resources/st32_1/'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nbank_core.ids import full_url

__all__ = ["KEYS", "input_ref", "provenance"]

KEYS = ("engine", "engine_version", "step", "inputs", "parameters")


def provenance(
    engine: str,
    *,
    step: str | None = None,
    inputs: Iterable[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    engine_version: str | None = None,
) -> dict[str, Any]:
    """The provenance metadata of one output (see the module's schema)."""
    meta: dict[str, Any] = {"engine": engine}
    if engine_version is not None:
        meta["engine_version"] = engine_version
    if step is not None:
        meta["step"] = step
    if inputs is not None:
        meta["inputs"] = list(inputs)
    if parameters:
        meta["parameters"] = dict(parameters)
    return meta


def input_ref(ident: str, input_registry: str, output_registry: str) -> str:
    """How an input is named among ``inputs``: its id if it lives in the output's
    registry, else its full identifier URL."""
    from nbank_core.registry import same_registry

    if same_registry(input_registry, output_registry):
        return ident
    return full_url(input_registry, ident)
