#!/usr/bin/env bash
# Issue 22's timings on this AVX512-BF16 CPU, nothing else running. Outputs in ~/quiet/.
set -u
cd /work/main && . .venv/bin/activate
export MINARI_DATASETS_PATH=/work/shared/bench-data/minari
O=~/quiet; git rev-parse --short HEAD > $O/commit
uptime > $O/uptime.before
python scripts/bench_train.py --contexts 20 --backbones mingru minlstm transformer --no-compiled-gates --bf16 --repeats 15 > $O/bt20.json 2> $O/bt20.err
python scripts/bench_peer_dt.py --time-only --threads 2 --time-repeats 15 --bf16 on > $O/peer.json 2> $O/peer.err
for amp in none bf16; do for layout in interleaved fused; do
  decision-minrnn bench --profile --json --amp $amp --dropout-impl fast --layout $layout > $O/prof_${amp}_${layout}.json 2> $O/prof_${amp}_${layout}.err
done; done
decision-minrnn bench --profile --json --amp none --dropout-impl torch --layout interleaved > $O/prof_none_interleaved_torch.json 2>/dev/null
decision-minrnn bench --latency --json > $O/latency.json 2> $O/latency.err
for v in f32 bf16; do
  rm -rf /tmp/qs-$v
  if [ $v = f32 ]; then sets=(); else sets=(--set train.amp=bf16 --set model.dropout_impl=fast); fi
  /usr/bin/time -f "%e s wall" -o $O/qs-$v.time decision-minrnn train --config configs/quickstart.yaml --run-dir /tmp/qs-$v --no-progress "${sets[@]}" > $O/qs-$v.out 2>&1
done
uptime > $O/uptime.after
echo done > $O/finished
