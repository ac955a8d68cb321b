#!/usr/bin/env bash
# Three synthetic days run twice (default config; every guard, IVF search and consolidation switched on),
# then exported: prints one sha256 per export. Two trees give the same clusters and ids when the lines match.
#   scripts/same_clusters.sh [WORKDIR]      (PY=python of the tree to check; default .venv/bin/python)
set -euo pipefail
PY=${PY:-.venv/bin/python}
work=${1:-$(mktemp -d)}
dc() { "$PY" -c 'import sys; from daskcluster.cli import main; sys.argv[0] = "daskcluster"; main()' "$@"; }
dc synth --out "$work/days" --days 3 --faces-per-day 6000 --identities 1200 --dim 64 --seed 7 >/dev/null
guards=(--set search.flat_below=500 --set cluster.mutual=true --set cluster.link=density --set assign.margin=0.02
        --set cluster.max_size=60 --set consolidate.after_day=true --set preprocess.centre=true)
for run in default guards; do
  extra=(); [ "$run" = guards ] && extra=("${guards[@]}")
  for day in "$work"/days/*/; do
    dc run-day --input "$day" --gallery "$work/$run" --workers 2 "${extra[@]}" >/dev/null 2>&1
  done
  dc export --gallery "$work/$run" --out "$work/$run.parquet" >/dev/null
  echo "$run $(sha256sum < "$work/$run.parquet" | cut -c1-16)"
done
