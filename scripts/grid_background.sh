#!/usr/bin/env bash
# Start (or resume) a long CPU grid in the background the way docs/results.md section 5f runs it: training code from a
# clone pinned to a commit (edits to this checkout cannot change a running grid), run directories outside the
# work tree, the runs already committed under docs/ copied in first (the sweep skips them), and a loop that
# harvests each finished run into docs/ every 5 minutes (the clone's scripts/harvest_grid.sh; committing stays yours).
#     scripts/grid_background.sh bench-cpu-nine 770b98e
# Logs: ~/GRID.log (the sweep), ~/GRID-harvest.log. Stop: scripts/grid_stop.sh GRID (the sweep, the harvester and
# the Ray workers; a run cut off resumes from its last checkpoint next time).
set -eu
if [ $# -ne 2 ]; then
  echo "usage: scripts/grid_background.sh GRID_NAME PINNED_COMMIT (e.g. bench-cpu-nine 770b98e)" >&2
  exit 2
fi
GRID=$1; PIN=$2
MAIN=$(cd "$(dirname "$0")/.." && pwd)
GRID_FILE=$MAIN/configs/grids/$GRID.yaml
[ -f "$GRID_FILE" ] || { echo "no grid file $GRID_FILE" >&2; exit 2; }
CLONE=~/grid-$GRID; ROOT=~/grid-runs
export MINARI_DATASETS_PATH=${MINARI_DATASETS_PATH:-$MAIN/../shared/bench-data/minari}
if [ ! -d "$CLONE/.venv" ]; then
  rm -rf "$CLONE"
  git clone -q "$MAIN" "$CLONE"
  git -C "$CLONE" checkout -q "$PIN"
  python3 -m venv "$CLONE/.venv"
  echo "installing the pinned clone's environment (log: ~/$GRID-install.log)"
  "$CLONE/.venv/bin/pip" install -q torch==2.13.0 > ~/"$GRID"-install.log 2>&1
  "$CLONE/.venv/bin/pip" install -q -e "$CLONE[ray,report]" >> ~/"$GRID"-install.log 2>&1
fi
[ "$(git -C "$CLONE" rev-parse --short=7 HEAD)" = "${PIN:0:7}" ] || { echo "$CLONE is not at $PIN" >&2; exit 2; }
mkdir -p "$ROOT/$GRID"
[ -d "$MAIN/docs/$GRID/runs" ] && cp -rn "$MAIN/docs/$GRID/runs/." "$ROOT/$GRID/"
# The grid file is this checkout's (the pinned package reads it): what the committed-grid test checks.
# The sweep starts in the clone: Ray puts the driver's working directory first on its workers' import path, so
# started from this checkout the workers would import this checkout's package, edits and all, not the pin.
cd "$CLONE"
nohup "$CLONE/.venv/bin/decision-minrnn" sweep --grid "$GRID_FILE" --runs-root "$ROOT" --max-parallel 2 \
  --cpus-per-run 1 >> ~/"$GRID".log 2>&1 &
echo $! > ~/"$GRID".pids
# The memory grid (issue 35) harvests window-mode scores instead of target sweeps and fits.
EXTRA=""; [ "$GRID" = memory ] && EXTRA=window
# The harvester is the clone's too: what it measures (target sweeps, fits, window scores) comes from the pinned
# code, not from whatever this checkout holds while it is being edited.
nohup bash -c "cd '$MAIN' && . '$CLONE/.venv/bin/activate' && while true; do '$CLONE/scripts/harvest_grid.sh' \
  '$ROOT/$GRID' '$MAIN/docs/$GRID/runs' $EXTRA; sleep 300; done" >> ~/"$GRID"-harvest.log 2>&1 &
echo $! >> ~/"$GRID".pids
echo "sweep and harvester started (pids in ~/$GRID.pids); logs ~/$GRID.log, ~/$GRID-harvest.log"
