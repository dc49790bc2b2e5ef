"""Tiny datasets made inside the tests (Minari datasets, D4RL hdf5 files), batches, and finished runs for reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from decision_minrnn.cli import main
from decision_minrnn.config import load_config
from decision_minrnn.data.episodes import Episode, write_d4rl_hdf5
from decision_minrnn.synthetic import (  # noqa: F401  (the tests import them from here)
    ACT_DIM,
    OBS_DIM,
    make_minari_dataset,
    random_batch,
    synthetic_episodes,
)

# Tests parametrized over devices run on CUDA wherever it exists, and skip with the reason here.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    ),
]

# A sweep's runs small enough for a report test: one layer, 6 steps, two 10-step episodes per evaluation.
FAST = [
    "model.embed_dim=16",
    "model.n_layers=1",
    "data.context_len=5",
    "train.batch_size=4",
    "train.steps=6",
    "train.warmup_steps=2",
    "train.log_every=3",
    "train.eval_every=3",
    "train.checkpoint_every=3",
    "eval.episodes=2",
    "eval.max_steps=10",
    "eval.target_returns=[3600]",
]

# The overrides of a model and a run small enough for a test to train in seconds.
TINY = [
    "model.embed_dim=16",
    "model.n_layers=2",
    "data.context_len=8",
    "train.batch_size=8",
    "train.warmup_steps=5",
    "train.log_every=5",
    "eval.episodes=0",
    "train.lr=0.001",
]


def make_d4rl_file(path, episodes, drop_keys=(), nan_obs=False):
    """Write D4RL v2 flat arrays (terminals / timeouts mark episode ends) with the package's writer; then,
    for error tests, drop keys or put a NaN into the observations."""
    write_d4rl_hdf5(
        path,
        [
            Episode(
                e["observations"][:-1],
                e["actions"],
                e["rewards"],
                bool(e["terminations"][-1]),
                bool(e["truncations"][-1]),
            )
            for e in episodes
        ],
    )
    if drop_keys or nan_obs:
        with h5py.File(path, "a") as f:
            for key in drop_keys:
                del f[key]
            if nan_obs:
                f["observations"][3, 2] = np.nan
    return path


def fake_run(root, label, backbone, seed, score, steps=6, **extra):
    """A finished run's config.yaml and final.json under root/label/backbone/seed<N>, for report tests."""
    run = root / label / backbone / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    summary = {
        "name": f"{label}/{backbone}/seed{seed}",
        "label": label,
        "step": steps,
        "finished": True,
        "backbone": backbone,
        "seed": seed,
        "behaviour_normalized": 35.0,
        "eval": {
            "target_return": 3600.0,
            "normalized_mean": score,
            "return_mean": None if score is None else 10 * score,
            "score_reference": "D4RL table",
        },
        **extra,
    }
    (run / "final.json").write_text(json.dumps(summary))
    return run


def tiny_config(tmp_path, dataset_id, steps, extra=()):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": dataset_id}}))
    # TINY's warmup, shortened for a run shorter than it (config.validate refuses a warmup longer than the run)
    budget = [f"train.steps={steps}", f"train.warmup_steps={min(5, steps)}", "train.checkpoint_every=10"]
    return path, TINY + budget + list(extra)


def cli_sets(overrides):
    """Dotted overrides as the CLI's repeated --set flags."""
    return [x for o in overrides for x in ("--set", o)]


def cli_trained_run(tmp_path, dataset_id):
    """A finished 10-step run made through the CLI: (config path, its --set flags, run dir)."""
    path, overrides = tiny_config(tmp_path, dataset_id, 10)
    sets = cli_sets(overrides)
    run = str(tmp_path / "run")
    assert main(["train", "--config", str(path), "--run-dir", run, "--no-progress", *sets]) == 0
    return path, sets, run


def weights(run_dir):
    ckpts = sorted((Path(run_dir) / "checkpoints").iterdir())
    return load_file(str(ckpts[-1] / "model.safetensors")), ckpts[-1]


def tiny_evaluated(dataset_id, *extra):
    """A 12-step TINY run that evaluates every 4 steps (2 episodes of 15 steps at DT's two hopper targets) and
    checkpoints every 6."""
    return load_config(
        None,
        [
            f"data.source=[{dataset_id}]",
            *TINY,
            "train.steps=12",
            "train.checkpoint_every=6",
            "train.log_every=3",
            "train.eval_every=4",
            "eval.episodes=2",
            "eval.max_steps=15",
            "eval.target_returns=[3600, 1800]",
            *extra,
        ],
    )


def save_weights_as_written(ckpt: Path, weights: dict) -> None:
    """Replace a checkpoint's model.safetensors as save_checkpoint would have written it (its digest in
    state.json updated): a checkpoint that was saved holding these weights, not one damaged afterwards."""
    from safetensors.torch import save_file

    from decision_minrnn.checkpoint import file_digest

    save_file(weights, str(ckpt / "model.safetensors"))
    state = json.loads((ckpt / "state.json").read_text())
    state["digests"]["model.safetensors"] = file_digest(ckpt / "model.safetensors")
    (ckpt / "state.json").write_text(json.dumps(state))


def gym_loop(policy, env_id, seeds, target=None, max_steps=60):
    """What a user writes: N envs stepped in lock-step, the batch of their full observations to act(); the envs'
    reset seeds go to reset() (a flicker view draws its drops from them, as `evaluate` does)."""
    import gymnasium as gym

    envs = [gym.make(env_id, max_episode_steps=max_steps) for _ in seeds]
    policy.reset(len(seeds), target_return=target, seeds=seeds)
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)])
    returns, active, reward = np.zeros(len(seeds)), np.ones(len(seeds), bool), None
    while active.any():
        action = policy.act(obs, reward)
        reward = np.zeros(len(seeds))
        for i in np.flatnonzero(active):
            o, r, terminated, truncated, _ = envs[i].step(action[i])
            obs[i], reward[i] = o, r
            returns[i] += r
            active[i] = not (terminated or truncated)
    return returns


def tiny_policy_run(max_steps: int) -> list[str]:
    """The overrides of a 10-step run small enough for the policy tests, without evaluations (eval.max_steps
    is what a gym loop of the test steps at most)."""
    return [
        "model.embed_dim=16",
        "model.n_layers=2",
        "data.context_len=8",
        "train.steps=10",
        "train.batch_size=8",
        "train.warmup_steps=2",
        "eval.episodes=0",
        f"eval.max_steps={max_steps}",
    ]


def snapshot(root: Path, dirs: bool = False, exclude: tuple[str, ...] = ()) -> dict:
    """Relative path -> sha256 of every file under root (names in `exclude` left out), and "dir" for every
    directory with dirs=True: what a refused command must leave exactly as it was."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
        if p.name not in exclude and (p.is_file() or (dirs and p.is_dir()))
    }


def one_line_error(capsys, *fragments):
    """The one line a refused command wrote to stderr (no traceback), holding every fragment."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def flip_bytes(path: Path, count: int = 16) -> None:
    """Invert the last `count` bytes of a file (a damaged checkpoint or export)."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) - count, len(data)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def refused(capsys, argv: list[str], *fragments: str) -> str:
    """Runs the CLI, expects exit 2 with one line on stderr holding every fragment; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def tiny_train_argv(tmp_path: Path, source) -> list[str]:
    """`train` of a tiny model for two steps on `source` into tmp_path/run (the config file written now)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(f"data:\n  source: [{source}]\n")
    tiny = ["model.embed_dim=8", "model.n_layers=1", "train.steps=2", "train.batch_size=2", "eval.episodes=0"]
    tiny.append("train.warmup_steps=1")
    argv = ["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    return argv + [x for o in tiny for x in ("--set", o)]
