#!/usr/bin/env bash
# Stop a grid that scripts/grid_background.sh started: the sweep and its harvester (the pids in ~/GRID.pids), then
# the Ray workers and the local Ray instance (a SIGINT to the sweep does not stop a worker busy in a run; seen with
# the memory grid). A run cut off resumes from its last checkpoint at the next grid_background.sh; the runs the
# harvester copied into docs/GRID/runs stay there, to be committed.
#     scripts/grid_stop.sh memory
set -u
if [ $# -ne 1 ]; then
  echo "usage: scripts/grid_stop.sh GRID_NAME (e.g. memory)" >&2
  exit 2
fi
GRID=$1; PIDS=~/"$GRID".pids; CLONE=~/grid-$GRID
[ -f "$PIDS" ] || { echo "error: no $PIDS: grid $GRID was not started on this machine" >&2; exit 2; }
for pid in $(cat "$PIDS"); do kill -INT "$pid" 2>/dev/null; done
for _ in $(seq "${GRID_STOP_WAIT:-30}"); do  # the sweep's own shutdown first, for up to 30 s
  alive=0
  for pid in $(cat "$PIDS"); do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 1
done
for pid in $(cat "$PIDS"); do kill -KILL "$pid" 2>/dev/null; done
if [ -x "$CLONE/.venv/bin/ray" ]; then  # every Ray process of this machine: its raylet, GCS and workers
  "$CLONE/.venv/bin/ray" stop --force > /dev/null 2>&1
fi
rm -f "$PIDS"
echo "grid $GRID stopped; resume it with scripts/grid_background.sh $GRID <pinned commit>"
