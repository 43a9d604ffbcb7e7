"""A small luigi pipeline on neurobank: spike times -> firing rates -> a summary.

Inputs are archived spike-time files (one time in seconds per line); every
output is deposited into the archive named by ``[nbank] archive``, registered
with the task that made it, its parameters and its inputs::

    luigi --module spike_pipeline SessionSummary --session st32 \\
        --units '["st32_1", "st32_2", "st32_3"]' --local-scheduler
"""

from __future__ import annotations

import json
import math

import luigi
from nbank_luigi import NbankResource, NbankTarget, NbankTask, ResourceIdParameter


class FiringRate(NbankTask):
    """The firing rate of one unit in bins of ``bin_ms`` (CSV: bin start, Hz)."""

    unit = ResourceIdParameter()
    bin_ms = luigi.IntParameter(default=500)

    def requires(self):
        return NbankResource(self.unit)

    def output(self):
        # no dtype named: '.csv' names it (the one datatype registered with
        # that extension, here firing-rate), checked before the task runs
        return NbankTarget(f"{self.unit}_rate{self.bin_ms}.csv")

    def run(self):
        with self.input().open() as src:
            times = [float(line) for line in src if line.strip()]
        width = self.bin_ms / 1000
        counts = [0] * (math.floor(max(times, default=0) / width) + 1)
        for t in times:
            counts[math.floor(t / width)] += 1
        with self.output().open("w") as out:
            out.write("bin_start_s,rate_hz\n")
            for i, n in enumerate(counts):
                out.write(f"{i * width:.3f},{n / width:.2f}\n")


class SessionSummary(NbankTask):
    """Mean and peak firing rate of each unit of a session (JSON)."""

    session = luigi.Parameter()
    units = luigi.ListParameter()
    bin_ms = luigi.IntParameter(default=500)
    dtype = "rate-summary"

    def requires(self):
        return [FiringRate(unit=u, bin_ms=self.bin_ms) for u in self.units]

    def output(self):
        return NbankTarget(f"{self.session}_summary{self.bin_ms}")

    def run(self):
        summary = {}
        for target in self.input():
            with target.open() as src:
                rates = [float(row.split(",")[1]) for row in list(src)[1:]]
            summary[target.id] = {
                "mean_hz": round(sum(rates) / len(rates), 2),
                "peak_hz": max(rates),
            }
        # temporary_path() suits commands that write a file themselves
        with self.output().temporary_path() as tmp, open(tmp, "w") as out:
            json.dump(summary, out, indent=2, sort_keys=True)
            out.write("\n")
