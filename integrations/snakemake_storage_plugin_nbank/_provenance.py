"""Provenance recorded in the metadata of every output the plugin deposits, in
nbank's one schema (:func:`nbank_core.provenance`):

- ``engine``: ``snakemake``; ``engine_version``: the Snakemake that ran the job;
- ``step``: the rule's name;
- ``inputs``: the ids of the job's ``nbank`` inputs, in order (an input from
  another registry is written as its full identifier URL). Local files and other
  storage providers are not recorded;
- ``parameters``: the job's wildcards.

The job is found in the DAG of the running workflow (Snakemake's module global
``snakemake.workflow.workflow``) by the output's local path; where there is none (a
storage object used outside a workflow) only the engine and its version are
recorded.

>>> sorted(JobIndex().provenance(object(), "sqlite:///r.sqlite"))
['engine', 'engine_version']
"""

from __future__ import annotations

import functools
import sys
from importlib import metadata
from typing import Any

from nbank_core import input_ref, provenance

__all__ = ["JobIndex", "snakemake_version", "workflow_of_process"]


@functools.cache
def snakemake_version() -> str:
    """The installed Snakemake's version."""
    try:
        return metadata.version("snakemake")
    except metadata.PackageNotFoundError:
        return "unknown"


def workflow_of_process() -> Any:
    """The workflow Snakemake is running in this process, or None."""
    return getattr(sys.modules.get("snakemake.workflow"), "workflow", None)


class JobIndex:
    """Finds the job that makes an output, indexing the DAG's outputs once (and
    again only when the DAG has grown)."""

    def __init__(self) -> None:
        self._by_output: dict[str, Any] = {}
        self._size = -1

    def job_of(self, path: str) -> Any:
        """The job of the running workflow with the output ``path``, or None."""
        dag = getattr(workflow_of_process(), "dag", None)
        if dag is None:
            return None
        job = self._by_output.get(path)
        if job is None and len(dag.jobs) != self._size:
            self._size = len(dag.jobs)
            self._by_output = {str(f): j for j in dag.jobs for f in j.output}
            job = self._by_output.get(path)
        return job

    def outputs_of(self, path: str) -> list[Any]:
        """The files of the job that makes ``path``: its outputs, log and
        benchmark files (empty without a job)."""
        job = self.job_of(path)
        if job is None:
            return []
        files = [*job.output, *(job.log or ())]
        return files + ([job.benchmark] if job.benchmark else [])

    def provenance(self, obj: Any, registry_url: str) -> dict[str, Any]:
        """Metadata describing the job that made the output of storage object
        ``obj``; ``registry_url`` is the registry the output goes to."""
        local_path = getattr(obj, "local_path", None)
        job = self.job_of(str(local_path())) if local_path is not None else None
        if job is None:
            return provenance("snakemake", engine_version=snakemake_version())
        inputs = []
        for f in job.input:
            so = f.storage_object if getattr(f, "is_storage", False) else None
            ident = getattr(so, "nbank_id", None)
            if ident is not None:
                inputs.append(input_ref(ident, so.provider.registry_url, registry_url))
        return provenance(
            "snakemake",
            step=job.rule.name,
            inputs=inputs,
            parameters=dict(job.wildcards_dict or {}),
            engine_version=snakemake_version(),
        )
