"""Luigi tasks for the luigi integration's tests, importable by ``luigi --module``.

Each task that runs appends one line to ``run_log`` (an insignificant parameter), so
tests count runs across processes.
"""

from __future__ import annotations

import datetime
import os
import time
import warnings
from pathlib import Path

with warnings.catch_warnings():  # luigi warns unless [core] autoload_range is set
    warnings.filterwarnings("ignore", r"\s*Autoloading range", DeprecationWarning)
    import luigi
    from nbank_luigi import NbankResource, NbankTarget, NbankTask, ResourceIdParameter


def note_run(log: str, what: str) -> None:
    """Appends a line to the run log ``log`` (if given)."""
    if log:
        with open(log, "a") as f:
            f.write(f"{what} {os.getpid()}\n")


class Upper(NbankTask):
    """Reads the resource ``unit`` and deposits it upper-cased as ``<unit>_up``."""

    unit = ResourceIdParameter()
    run_log = luigi.Parameter(default="", significant=False)
    delay = luigi.FloatParameter(default=0.0, significant=False)

    def requires(self):
        return NbankResource(self.unit)

    def output(self):
        return NbankTarget(f"{self.unit}_up")

    def run(self):
        note_run(self.run_log, f"Upper {self.unit}")
        time.sleep(self.delay)
        with self.input().open() as src, self.output().open("w") as out:
            out.write(src.read().upper())


class Broken(NbankTask):
    """Writes half of its output, then fails."""

    name = luigi.Parameter()
    run_log = luigi.Parameter(default="", significant=False)

    def output(self):
        return NbankTarget(self.name)

    def run(self):
        note_run(self.run_log, f"Broken {self.name}")
        with self.output().open("w") as out:
            out.write("half of the data\n")
            out.flush()
            raise RuntimeError("the analysis crashed mid-write")


class BrokenTemp(NbankTask):
    """Writes its output through ``temporary_path()``, then fails."""

    name = luigi.Parameter()

    def output(self):
        return NbankTarget(self.name)

    def run(self):
        with self.output().temporary_path() as tmp:
            Path(tmp).write_text("partial\n")
            raise RuntimeError("the external command failed")


class Forgetful(NbankTask):
    """Runs without writing its output."""

    name = luigi.Parameter()

    def output(self):
        return NbankTarget(self.name)

    def run(self):
        pass


class Clash(NbankTask):
    """Writes ``content`` under ``name``: two variants clash on one id."""

    name = luigi.Parameter()
    content = luigi.Parameter()

    def output(self):
        return NbankTarget(self.name)

    def run(self):
        with self.output().open("w") as out:
            out.write(self.content)


class Item(NbankTask):
    """Deposits ``<prefix><i>`` with content unique to it."""

    prefix = luigi.Parameter()
    i = luigi.IntParameter()
    run_log = luigi.Parameter(default="", significant=False)

    def output(self):
        return NbankTarget(f"{self.prefix}{self.i}")

    def run(self):
        note_run(self.run_log, f"Item {self.prefix}{self.i}")
        with self.output().open("wb") as out:
            out.write(f"item {self.prefix}{self.i}\n".encode())


class Fan(luigi.WrapperTask):
    """Requires ``Item(prefix, i)`` for i in range(n)."""

    prefix = luigi.Parameter()
    n = luigi.IntParameter()
    run_log = luigi.Parameter(default="", significant=False)

    def requires(self):
        return [
            Item(prefix=self.prefix, i=i, run_log=self.run_log) for i in range(self.n)
        ]


class Gather(NbankTask):
    """Concatenates ``Item(prefix, i)`` for i in range(n) into ``<prefix>all``."""

    prefix = luigi.Parameter()
    n = luigi.IntParameter()

    def requires(self):
        return [Item(prefix=self.prefix, i=i) for i in range(self.n)]

    def output(self):
        return NbankTarget(f"{self.prefix}all")

    def run(self):
        with self.output().temporary_path() as tmp, open(tmp, "wb") as out:
            for target in self.input():
                with target.open("rb") as src:
                    out.write(src.read())


class Daily(NbankTask):
    """One output per day, for luigi's range tools."""

    date = luigi.DateParameter()  # first: range tools pass it by position
    prefix = luigi.Parameter()

    def output(self):
        return NbankTarget(f"{self.prefix}{self.date:%Y%m%d}")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.prefix} {self.date}\n")


def days(start: datetime.date, n: int) -> list[datetime.date]:
    """``n`` consecutive dates from ``start``."""
    return [start + datetime.timedelta(days=k) for k in range(n)]


class Typed(NbankTask):
    """Writes ``<name><ext>`` naming no datatype: the extension must name it."""

    name = luigi.Parameter()
    ext = luigi.Parameter()
    run_log = luigi.Parameter(default="", significant=False)

    def output(self):
        return NbankTarget(f"{self.name}{self.ext}")

    def run(self):
        note_run(self.run_log, f"Typed {self.name}")
        with self.output().open("w") as out:
            out.write(f"typed {self.name}\n")


class AfterTyped(NbankTask):
    """Depends on ``Typed``: not run when that one cannot be."""

    name = luigi.Parameter()
    ext = luigi.Parameter()
    run_log = luigi.Parameter(default="", significant=False)

    def requires(self):
        return Typed(name=self.name, ext=self.ext, run_log=self.run_log)

    def output(self):
        return NbankTarget(f"{self.name}_after{self.ext}")

    def run(self):
        note_run(self.run_log, f"AfterTyped {self.name}")
        with self.input().open() as src, self.output().open("w") as out:
            out.write(src.read())


FORMATS = {
    "nop": luigi.format.Nop,
    "utf8": luigi.format.UTF8,
    "gzip": luigi.format.Gzip,
    "utf8-gzip": luigi.format.UTF8 >> luigi.format.Gzip,
    "newline": luigi.format.SysNewLine,
}
TEXT_FORMATS = {"utf8", "utf8-gzip"}


def formatted_content(name: str) -> str:
    return f"gr\u00fcn {name}\nline 2\n"


class Formatted(NbankTask):
    """Writes ``formatted_content(name)`` through the luigi format ``fmt`` (text
    for text formats, UTF-8 bytes otherwise); ``fail`` raises mid-write."""

    name = luigi.Parameter()
    fmt = luigi.ChoiceParameter(choices=list(FORMATS))
    fail = luigi.BoolParameter(default=False)

    def output(self):
        return NbankTarget(self.name, format=FORMATS[self.fmt])

    def run(self):
        data = formatted_content(self.name)
        with self.output().open("w") as out:
            out.write(data if self.fmt in TEXT_FORMATS else data.encode())
            if self.fail:
                out.flush()
                raise RuntimeError("the analysis crashed mid-write")


class Unformat(NbankTask):
    """Reads ``Formatted(name, fmt)`` through its format and writes it plain."""

    name = luigi.Parameter()
    fmt = luigi.ChoiceParameter(choices=list(FORMATS))

    def requires(self):
        return Formatted(name=self.name, fmt=self.fmt)

    def output(self):
        return NbankTarget(f"{self.name}_plain")

    def run(self):
        with self.input().open("r") as src:
            data = src.read()
        if self.fmt not in TEXT_FORMATS:
            data = data.decode()
        with self.output().open("w") as out:
            out.write(data)
