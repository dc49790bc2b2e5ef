"""The memory estimate (memory.training_bytes) against the peak RSS a real training step reaches, measured in a
fresh process at two batch sizes: the sizes where the check matters, since small batches fit anyway."""

import json
import subprocess
import sys

import pytest

MEASURE = """
import json, os, resource, sys
import torch
from decision_minrnn.synthetic import random_batch
from decision_minrnn.config import load_config
from decision_minrnn.memory import training_bytes
from decision_minrnn.models import build_model
from decision_minrnn.update import adamw, masked_mse

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

cfg = load_config(None, sys.argv[1:])
torch.set_num_threads(2)
data = random_batch(cfg.train.batch_size, cfg.data.context_len, 11, 3, torch.float32)
before = rss()  # torch, the batch: what the process holds before the model and its step
model = build_model(cfg, 11, 3).train()
optimizer = adamw(model, cfg)
for _ in range(2):  # the second step allocates nothing new but AdamW's moments are there from the first
    loss = masked_mse(model(data), data["act"], data["mask"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
with open("/proc/self/status") as f:  # VmHWM: the peak since exec (ru_maxrss keeps a larger parent's)
    peak = int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) * 1024
tokens = 3 if cfg.model.token_layout == "interleaved" else 1
print(json.dumps({"measured": peak - before, "estimate": training_bytes(cfg, 11, 3, tokens, cfg.data.context_len)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        # The quickstart's model (DT-size minGRU, fused tokens, K=20) at a large batch: 2.7 GB here. (Batch 8000,
        # 5.4 GB, was a case too: the same code path at twice the size, the suite's slowest test.)
        ["model.backbone=mingru", "model.token_layout=fused", "train.batch_size=4000"],
        # Smaller tensors, which glibc keeps on its heap after they are freed: the most over the tensors' bytes.
        ["model.backbone=mingru", "model.token_layout=fused", "train.batch_size=3200"],
        # Whole episodes: a transformer over 1000 tokens (issue 36's case), minLSTM over 900 interleaved.
        ["model.backbone=transformer", "model.token_layout=fused", "data.context_len=1000", "train.batch_size=16"],
        ["model.backbone=minlstm", "model.token_layout=interleaved", "data.context_len=300", "train.batch_size=40"],
    ],
    ids=["mingru-b4000", "mingru-b3200", "transformer-K1000", "minlstm-interleaved-K300"],
)
def test_the_estimate_bounds_the_measured_peak_from_above_within_about_twice(overrides):
    done = subprocess.run([sys.executable, "-c", MEASURE, *overrides], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = result["measured"] / result["estimate"]
    assert 1 / 2.3 <= ratio <= 1.0, result
