"""Tasks: ``NbankTask`` (outputs deposited with provenance, checked after run) and
``NbankResource`` (an input that must already be archived).

Example::

    class Spikes(NbankTask):
        unit = ResourceIdParameter()
        dtype = "spike-times"

        def requires(self):
            return NbankResource(self.unit)

        def output(self):
            return NbankTarget(f"{self.unit}_spikes")

        def run(self):
            with self.input().open() as src, self.output().open("w") as out:
                out.write(src.read())

Every :class:`~nbank_luigi.NbankTarget` returned by ``output()`` is bound to the
task: when written it takes the task's ``dtype`` (unless the target names one)
and :meth:`NbankTask.output_metadata`. ``output()`` runs once per task instance
(luigi outputs derive from parameters) and its result is reused.

Before a task runs, each of its outputs is checked for what a write needs (an
archive here, a datatype: named, or the one registered for the output's
extension): a task that is not complete fails its completeness check with the
reason, so luigi reports it when it schedules the task and never runs it; its
``run()`` checks again first (for a worker that did not schedule it).

After ``run()`` returns, ``on_success`` asks the registry (not the cache)
whether every output was deposited and fails the task, naming the missing ones,
if not; a subclass that overrides ``on_success`` must call
``super().on_success()``. Luigi's ``[worker] check_complete_on_run`` is not
needed, and harmless.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, ClassVar

import luigi
from luigi.task import flatten

from nbank_core import NotFound, input_ref, provenance
from nbank_luigi.lookup import expect_again, refresh, watch_task
from nbank_luigi.parameter import ResourceIdParameter
from nbank_luigi.target import NbankTarget

__all__ = ["NbankResource", "NbankTask", "bind_outputs"]


def bind_outputs(struct: Any, task: luigi.Task) -> Any:
    """Returns ``struct`` (a target, or dicts/lists/tuples of them) with each
    NbankTarget bound to ``task``."""
    if isinstance(struct, NbankTarget):
        return struct.bound_to(task)
    if isinstance(struct, dict):
        return {k: bind_outputs(v, task) for k, v in struct.items()}
    if isinstance(struct, list | tuple):
        return type(struct)(bind_outputs(v, task) for v in struct)
    return struct


class NbankTask(luigi.Task):
    """A task whose NbankTarget outputs are deposited with provenance metadata.

    ``dtype`` (class attribute or parameter) is the datatype of its outputs;
    ``[nbank] dtype`` applies when neither the task nor the target names one.
    Depositing identical content under an existing id succeeds (a rerun after a
    lost registry answer is harmless); different content fails the task with a
    message naming both hashes. Identical content under different ids (two
    empty results) is deposited for each.
    """

    dtype: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        output = cls.__dict__.get("output")
        if output is not None and not getattr(output, "_nbank_bound", False):
            key = f"_nbank_output_{cls.__module__}.{cls.__qualname__}"

            @functools.wraps(output)
            def bound_output(self: NbankTask) -> Any:
                # made once per instance: outputs derive from parameters, and
                # luigi asks for them many times
                if key not in self.__dict__:
                    self.__dict__[key] = bind_outputs(output(self), self)
                return self.__dict__[key]

            bound_output._nbank_bound = True  # type: ignore[attr-defined]
            cls.output = bound_output  # type: ignore[method-assign]
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "_nbank_checked", False):

            @functools.wraps(run)
            def checked_run(self: NbankTask, *args: Any, **kwargs: Any) -> Any:
                self.check_outputs()  # before any work: a generator too
                return run(self, *args, **kwargs)

            checked_run._nbank_checked = True  # type: ignore[attr-defined]
            cls.run = checked_run  # type: ignore[method-assign]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        watch_task(self)  # its outputs join the next bulk lookup

    def check_outputs(self) -> None:
        """Raises what writing an NbankTarget output would fail with (see
        :meth:`NbankTarget.check_writable`): no archive, no datatype..."""
        for target in flatten(self.output()):
            if isinstance(target, NbankTarget):
                target.check_writable()

    def complete(self) -> bool:
        """True when every output exists; a task that is not complete and
        could not write its outputs raises why (luigi then reports it and runs
        neither it nor what depends on it)."""
        if super().complete():
            return True
        self.check_outputs()
        return False

    def output_metadata(self) -> dict[str, Any]:
        """The metadata stored with each output: the core's provenance schema
        (:func:`nbank_core.provenance`) with ``step`` the task family,
        ``parameters`` its significant public parameters and ``inputs`` the ids
        of its NbankTarget inputs (full URLs for another registry). Override to
        add keys (call ``super()``)."""
        mine = [t for t in flatten(self.output()) if isinstance(t, NbankTarget)]
        inputs = [t for t in flatten(self.input()) if isinstance(t, NbankTarget)]
        here = mine[0].settings.registry if mine else None
        return provenance(
            "luigi",
            step=self.task_family,
            inputs=[
                input_ref(t.id, t.settings.registry, here or t.settings.registry)
                for t in inputs
            ],
            parameters=self.to_str_params(only_significant=True, only_public=True),
            engine_version=luigi.__version__,
        )

    def on_success(self) -> Any:
        """Fails the task if an NbankTarget output was not deposited."""
        outputs = [t for t in flatten(self.output()) if isinstance(t, NbankTarget)]
        missing = [t for t, ok in refresh(outputs).items() if not ok]
        if missing:
            names = ", ".join(f"'{t.id}'" for t in missing)
            raise NotFound(
                f"{self} finished without depositing {names}: write each output "
                "with output().open('w') or output().temporary_path(), and let the "
                "block end without error"
            )
        return super().on_success()

    @classmethod
    def bulk_complete(cls, parameter_tuples: Iterable[Any]) -> list[Any]:
        """The parameter tuples whose tasks are complete, found with one bulk
        lookup (used by luigi's range tools)."""
        params = list(parameter_tuples)
        outputs = [flatten(_instantiate(cls, p).output()) for p in params]
        # the missing ones are checked again soon (by the range task, then the
        # scheduler): this lookup answers the next question of each, and they
        # travel together in the next bulk lookup
        known = refresh(
            {o for outs in outputs for o in outs if isinstance(o, NbankTarget)},
            ahead=True,
        )
        expect_again(t for t, ok in known.items() if not ok)
        return [
            p
            for p, outs in zip(params, outputs, strict=True)
            if outs and all(known[o] if o in known else o.exists() for o in outs)
        ]


def _instantiate(cls: type[luigi.Task], p: Any) -> luigi.Task:
    if isinstance(p, list | tuple):
        return cls(*p)
    if isinstance(p, dict):
        return cls(**p)
    return cls(p)


class NbankResource(luigi.ExternalTask):
    """A resource that must already be archived: ``requires()`` returns it.

    >>> NbankResource("nbank://st32_1").id
    'st32_1'
    """

    id = ResourceIdParameter(description="the resource's id (any written form)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        watch_task(self)

    def output(self) -> NbankTarget:
        return NbankTarget(self.id)
