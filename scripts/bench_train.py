"""Training step time per backbone x context length K x token layout, measured side by side.

    python scripts/bench_train.py [--contexts 20 200 1000] [--repeats 3] [--no-compiled-gates]

Prints JSON (batch 64, 16 at K >= 1000; embed 128, 3 layers; Hopper dims).
"""

import argparse
import json

from decision_minrnn.benchmarks import bench_train_step

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--contexts", type=int, nargs="+", default=[20, 200, 1000])
parser.add_argument("--backbones", nargs="+", default=["mingru", "minlstm", "transformer", "gru", "lstm"])
parser.add_argument("--layouts", nargs="+", default=["interleaved", "fused"])
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--device", default="cpu")
parser.add_argument(
    "--no-compiled-gates", action="store_true", help="skip the minRNN variants with model.compile_gates=true"
)
args = parser.parse_args()
print(
    json.dumps(
        bench_train_step(
            args.backbones,
            args.contexts,
            args.layouts,
            repeats=args.repeats,
            device=args.device,
            compiled_gates=not args.no_compiled_gates,
        ),
        indent=1,
    )
)
