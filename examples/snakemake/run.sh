#!/usr/bin/env bash
# Runs the example on an embedded registry kept inside the working directory.
#
#   examples/snakemake/run.sh [WORKDIR]     (default: the current directory)
#
# Needs the `nbank` and `snakemake` commands (pip install 'neurobank[snakemake]')
# and python3. Safe to run again: the second run has nothing to do.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-.}"
mkdir -p "$work"
cd "$work"

# never touch the user's own registry: everything lives under this directory
export NBANK_HOME="$PWD/.nbank"
export NBANK_REGISTRY="sqlite://$NBANK_HOME/registry.sqlite"
unset NBANK_AUTH SNAKEMAKE_STORAGE_NBANK_REGISTRY SNAKEMAKE_STORAGE_NBANK_AUTH
mkdir -p "$NBANK_HOME"

if [ ! -f archive/nbank.json ]; then
    nbank init archive
    nbank dtype add wav-stimulus audio/wav -e .wav
    nbank dtype add stimulus-summary application/json -e .json
fi

# generate and deposit the stimuli that are not registered yet
python3 "$here/make_stimuli.py" stimuli >/dev/null
for wav in stimuli/*.wav; do
    id="$(basename "$wav" .wav)"
    if nbank locate "$id" >/dev/null 2>&1; then
        rm "$wav"
    else
        nbank deposit -d wav-stimulus archive "$wav"
    fi
done

snakemake --snakefile "$here/Snakefile" --cores 2 --config archive="$PWD/archive"

echo "== summaries deposited by the workflow (nbank search -d stimulus-summary)"
nbank search -d stimulus-summary
echo "== where they are (nbank locate)"
nbank locate $(nbank search -d stimulus-summary)
echo "== results/stimuli.tsv"
cat results/stimuli.tsv
