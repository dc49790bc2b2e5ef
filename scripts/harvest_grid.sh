#!/usr/bin/env bash
# Harvest a sweep's finished runs into a folder that is committed (docs/results.md section 5f): for each finished run
# under RUNS that DEST does not hold yet, its conditioning curve (evaluate --target-sweep 6, 10 episodes per
# target, last checkpoint) and its fixed-window fit (scripts/fit_windows.py), then its small files (config,
# final, metrics, scalars, target_sweep.json, fit_windows.json) copied to DEST. Checkpoints stay in RUNS. A
# target_rule.json that scripts/target_rule.py measured later is copied into a harvested run too.
# Run it from the checkout whose package should evaluate, with its environment active:
#     scripts/harvest_grid.sh ~/grid-runs/bench-cpu-nine docs/bench-cpu-nine/runs
# With a third argument `window` (the memory grid, issue 35) it skips the sweep and the fit and instead scores
# the K=20 minRNN runs in window mode (scripts/memory_study.py measure: window_score.json), then copies.
set -u
if [ $# -lt 2 ] || [ $# -gt 3 ] || [ ! -d "$1" ] || { [ $# -eq 3 ] && [ "$3" != window ]; }; then
  echo "usage: scripts/harvest_grid.sh RUNS_DIR DEST_DIR [window] (RUNS_DIR: a sweep's runs, e.g. ~/grid-runs/bench-cpu-nine)" >&2
  exit 2
fi
R=$(cd "$1" && pwd); D=$2
if [ "${3:-}" = window ]; then
  nice -n 5 python "$(dirname "$0")/memory_study.py" measure "$R" > /dev/null || echo "window scores failed"
  for f in "$R"/*/*/seed*/final.json; do
    [ -f "$f" ] && grep -Eq '"finished": *true' "$f" || continue
    run=$(dirname "$f"); rel=${run#"$R"/}
    case "$rel" in */mingru-k20/*) [ -f "$run/window_score.json" ] || continue ;; esac
    [ -f "$D/$rel/final.json" ] && { [ ! -f "$run/window_score.json" ] || [ -f "$D/$rel/window_score.json" ]; } && continue
    mkdir -p "$D/$rel"
    for f in config.yaml final.json metrics.jsonl scalars.csv window_score.json; do
      [ -f "$run/$f" ] && cp "$run/$f" "$D/$rel/"
    done
    echo "harvested $rel"
  done
  exit 0
fi
for f in "$R"/*/*/seed*/final.json; do
  [ -f "$f" ] || continue
  run=$(dirname "$f"); rel=${run#"$R"/}
  # harvested already (a run committed before fit_windows.json existed has no checkpoints left to fit)
  [ -f "$D/$rel/target_sweep.json" ] && { [ -f "$D/$rel/fit_windows.json" ] || [ ! -d "$run/checkpoints" ]; } && continue
  grep -Eq '"finished": *true' "$f" || continue
  [ -d "$run/checkpoints" ] || { echo "no checkpoints, nothing to sweep: $rel"; continue; }
  [ -f "$run/target_sweep.json" ] || nice -n 5 decision-minrnn evaluate --checkpoint "$run" --target-sweep 6 \
    --episodes 10 > /dev/null || { echo "target sweep failed: $rel"; continue; }
  [ -f "$run/fit_windows.json" ] || nice -n 5 python "$(dirname "$0")/fit_windows.py" measure "$run" > /dev/null \
    || { echo "fit failed: $rel"; continue; }
  mkdir -p "$D/$rel"
  # what the run has of its small files (a run without evaluations has no metrics.jsonl): a missing one is
  # not retried forever
  for f in config.yaml final.json metrics.jsonl scalars.csv target_sweep.json fit_windows.json; do
    [ -f "$run/$f" ] && cp "$run/$f" "$D/$rel/"
  done
  echo "harvested $rel"
done
for f in "$R"/*/*/seed*/target_rule.json; do
  [ -f "$f" ] || continue
  rel=$(dirname "${f#"$R"/}")
  if [ -d "$D/$rel" ] && ! cmp -s "$f" "$D/$rel/target_rule.json"; then
    cp "$f" "$D/$rel/" && echo "copied $rel/target_rule.json"
  fi
done
