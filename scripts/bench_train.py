"""Training step time per backbone x context length K x token layout, measured side by side.

    python scripts/bench_train.py [--contexts 20 200 1000] [--repeats 3] [--no-compiled-gates]
                                  [--bf16] [--train-compile] [--no-fast-dropout] [--per-tensor-adamw] [--device cuda]

Prints JSON (batch 64, 16 at K >= 1000; embed 128, 3 layers; Hopper dims). --bf16 defaults to on where the device
has native bf16 (CUDA with bf16, a CPU with AVX512-BF16 or AMX), --train-compile to on with --device cuda, where
each row also gives peak memory per variant. Every backbone is also timed with model.dropout_impl=fast unless
--no-fast-dropout.
"""

import argparse
import json

from decision_minrnn.benchmarks import bench_train_step

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
# Unset options take bench_train_step's defaults (every backbone, K = 20 / 200 / 1000, both layouts).
parser.add_argument("--contexts", type=int, nargs="+")
parser.add_argument("--backbones", nargs="+")
parser.add_argument("--layouts", nargs="+")
parser.add_argument("--repeats", type=int)
parser.add_argument("--device")
parser.add_argument(
    "--no-compiled-gates", action="store_true", help="skip the minRNN variants with model.compile_gates=true"
)
parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast variants")
parser.add_argument(
    "--train-compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile(model) variants"
)
parser.add_argument("--no-fast-dropout", action="store_true", help="skip the model.dropout_impl=fast variants")
parser.add_argument(
    "--per-tensor-adamw", action="store_true", help="also time torch's per-tensor AdamW loop (before update.adamw)"
)
args = parser.parse_args()
given = {k: v for k, v in vars(args).items() if v is not None and k not in ("no_compiled_gates", "no_fast_dropout")}
given |= {"compiled_gates": not args.no_compiled_gates, "fast_dropout": not args.no_fast_dropout}
print(json.dumps(bench_train_step(**given), indent=1))
