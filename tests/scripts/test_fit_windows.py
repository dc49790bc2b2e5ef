"""scripts/fit_windows.py: the fit of a run's last checkpoint on fixed training windows, the measure that
survives the checkpoint (issue 22's score check of bf16 and the fast dropout masks)."""

import importlib.util
import json
import shutil
from pathlib import Path

import torch
from helpers import tiny_evaluated

from decision_minrnn.data.episodes import load_source
from decision_minrnn.data.normalization import ObsNormalizer
from decision_minrnn.data.sampler import WindowSampler
from decision_minrnn.runs import model_from_checkpoint
from decision_minrnn.train import train
from decision_minrnn.update import masked_mse

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fit_windows.py"
spec = importlib.util.spec_from_file_location("fit_windows", SCRIPT)
fit_windows = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fit_windows)


def test_measure_is_the_masked_mse_on_the_seeded_windows_and_compare_pairs_seeds(tiny_minari, tmp_path):
    dataset_id, _ = tiny_minari
    runs = tmp_path / "runs"
    for seed in (0, 1):
        cfg = tiny_evaluated(dataset_id, f"train.seed={seed}")
        train(cfg, runs / "tiny" / "mingru" / f"seed{seed}", progress=False)
    out = fit_windows.measure(runs, force=False)
    assert len(out["written"]) == 2 and out["kept"] == []

    # By hand: the same 1024 windows (the data's own normalization, the fixed seed), the last checkpoint.
    run = runs / "tiny" / "mingru" / "seed1"
    _, cfg, _, model = model_from_checkpoint(run)
    dataset = load_source(cfg.data.source)
    sampler = WindowSampler(
        dataset, ObsNormalizer.fit(dataset.episodes), cfg.data.context_len, 1024, cfg.data.rtg_scale,
        cfg.data.max_ep_len, seed=12345,
    )  # fmt: skip
    batch = sampler.sample()
    with torch.no_grad():
        expected = masked_mse(model(batch), batch["act"], batch["mask"]).item()
    written = json.loads((run / "fit_windows.json").read_text())
    assert written["fit_windows_mse"] == expected
    assert written["step"] == 12 and written["windows"] == 1024

    # A second measure keeps the files; compare reads them back per seed, and a run against itself is ratio 1.
    assert fit_windows.measure(runs, force=False)["written"] == []
    # A run whose checkpoints are gone (its small files committed elsewhere) is listed, not an error.
    shutil.rmtree(runs / "tiny" / "mingru" / "seed0" / "checkpoints")
    out = fit_windows.measure(runs, force=True)
    assert out["no_checkpoint"] == [str(runs / "tiny" / "mingru" / "seed0")] and len(out["written"]) == 1
    rows = fit_windows.compare(runs, runs, ["a", "b"])["rows"]
    assert len(rows) == 1 and rows[0]["ratio"] == 1.0
    assert rows[0]["a"]["seeds"][1] == expected
    seed0 = json.loads((runs / "tiny" / "mingru" / "seed0" / "fit_windows.json").read_text())["fit_windows_mse"]
    assert seed0 != expected, "two seeds' weights should not fit the windows identically"
