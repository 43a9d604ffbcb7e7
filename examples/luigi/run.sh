#!/usr/bin/env bash
# Runs the luigi example on an embedded registry kept inside the working directory.
#
#   examples/luigi/run.sh [WORKDIR]     (default: the current directory)
#
# Needs the `nbank` and `luigi` commands (pip install 'neurobank[luigi]') and
# python3. Safe to run again: the second run finds everything complete.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-.}"
mkdir -p "$work"
cd "$work"

# never touch the user's own registry: everything lives under this directory
export NBANK_HOME="$PWD/.nbank"
export NBANK_REGISTRY="sqlite://$NBANK_HOME/registry.sqlite"
unset NBANK_AUTH
mkdir -p "$NBANK_HOME"

if [ ! -f archive/nbank.json ]; then
    nbank init archive
    nbank dtype add spike-times text/plain -e .txt
    nbank dtype add firing-rate text/csv -e .csv
    nbank dtype add rate-summary application/json -e .json
fi

# record the units, and deposit those not registered yet
python3 "$here/make_units.py" units >/dev/null
for f in units/*.txt; do
    id="$(basename "$f" .txt)"
    if nbank locate "$id" >/dev/null 2>&1; then
        rm "$f"
    else
        nbank deposit -d spike-times -k session=st32 archive "$f"
    fi
done

# luigi's configuration: where outputs go; failures make the command fail
cat > luigi.cfg <<CFG
[core]
autoload_range = false

[nbank]
archive = $PWD/archive

[retcode]
already_running = 10
missing_data = 20
not_run = 25
task_failed = 30
scheduling_error = 35
unhandled_exception = 40
CFG
export LUIGI_CONFIG_PATH="$PWD/luigi.cfg"

PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" luigi --module spike_pipeline \
    SessionSummary --session st32 --units '["st32_1", "st32_2", "st32_3"]' \
    --local-scheduler --log-level WARNING

echo "== firing rates deposited by the pipeline (nbank search -d firing-rate)"
nbank search -d firing-rate
echo "== their provenance (nbank info st32_1_rate500)"
nbank info st32_1_rate500
# the file's path: what 'nbank locate' prints after the id and a tab, if any
summary="$(nbank locate st32_summary500 | cut -f2)"
echo "== the summary ($summary)"
cat "$summary"
