"""Our DT transformer beside an independent Decision Transformer: Hugging Face transformers'
`DecisionTransformerModel`, trained on the same data, batches, recipe and seeds, and scored by our evaluator.

    pip install -e ".[peer]"
    export MINARI_DATASETS_PATH=../shared/bench-data/minari
    python scripts/bench_peer_dt.py --source bench/hopper/medium-v0 --steps 10000 --seeds 0 1 2 --out runs/peer-dt
    python scripts/bench_peer_dt.py --time-only           # step time only, side by side, no training

What is shared, so that only the implementation differs:
* data and batches: our loader, normalizer and WindowSampler with the run's seed (right-padded windows
  with a mask; the peer gets the mask as its attention_mask, so real tokens never attend to padding);
* recipe: DT's (kzl/decision-transformer gym/experiment.py): K=20, embed 128, 3 layers, 1 head, ReLU MLP
  4x, dropout 0.1, AdamW lr 1e-4 / weight decay 1e-4, linear warmup (10k steps; over a 10k-step run the rate
  warms up for the whole run, as DT's first 10k steps do), grad clip 0.25, batch 64, interleaved tokens, the
  masked MSE loss; our side is `decision_minrnn.train.train` itself;
* evaluation: our rollouts in window mode (DT's evaluate_episode_rtg), same targets, episodes and seeds.

Prints JSON: per seed and implementation the normalized score at each target and the training time; the
summary with 95% bootstrap intervals over seeds; the step-time ratio measured round-robin in one process.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from decision_minrnn.benchmarks import machine_info, time_interleaved
from decision_minrnn.config import load_config
from decision_minrnn.data.episodes import load_source
from decision_minrnn.data.normalization import ObsNormalizer
from decision_minrnn.data.sampler import WindowSampler
from decision_minrnn.envs.evaluate import evaluate_targets
from decision_minrnn.train import (
    build_model,
    data_state,
    eval_targets,
    lr_at,
    masked_mse,
    optimizer_step,
    policy_context,
    train,
    training_sampler,
)

DT_RECIPE = [
    "data.context_len=20",
    "model.backbone=transformer",
    "model.embed_dim=128",
    "model.n_layers=3",
    "model.n_heads=1",
    "model.dropout=0.1",
    "model.token_layout=interleaved",
    "train.lr=0.0001",
    "train.weight_decay=0.0001",
    "train.warmup_steps=10000",
    "train.lr_schedule=constant",
    "train.grad_clip=0.25",
    "train.batch_size=64",
]


class PeerDT(nn.Module):
    """transformers' DecisionTransformerModel behind the interface our window-mode evaluator calls."""

    recurrent = False
    backbone_name = "hf-decision-transformer"

    def __init__(self, obs_dim: int, act_dim: int, cfg):
        from transformers import DecisionTransformerConfig, DecisionTransformerModel

        super().__init__()
        m = cfg.model
        self.obs_dim, self.act_dim, self.max_ep_len = obs_dim, act_dim, cfg.data.max_ep_len
        self.hf = DecisionTransformerModel(
            DecisionTransformerConfig(
                state_dim=obs_dim,
                act_dim=act_dim,
                hidden_size=m.embed_dim,
                max_ep_len=cfg.data.max_ep_len,
                n_layer=m.n_layers,
                n_head=m.n_heads,
                n_inner=4 * m.embed_dim,
                activation_function="relu",
                n_positions=1024,
                resid_pdrop=m.dropout,
                embd_pdrop=m.dropout,
                attn_pdrop=m.dropout,
                action_tanh=True,
                bos_token_id=None,
                eos_token_id=None,
            )
        )  # GPT-2 text-token ids mean nothing here (vocab_size 1)

    def initial_state(self, n, device=None):
        return None

    def forward(self, batch: dict) -> torch.Tensor:
        """Our batch dict (obs, act, rtg, timesteps, optional mask) -> predicted actions (B, K, act_dim)."""
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones_like(batch["timesteps"], dtype=torch.bool)
        out = self.hf(
            states=batch["obs"],
            actions=batch["act"],
            rewards=None,
            returns_to_go=batch["rtg"],
            timesteps=batch["timesteps"],
            attention_mask=mask.long(),
            return_dict=True,
        )
        return out.action_preds


def train_peer(cfg, dataset, obs_norm, steps: int) -> tuple[PeerDT, float]:
    """Our trainer's loop (same sampler stream, schedule, clip, loss), the peer model in place of ours."""
    torch.manual_seed(cfg.train.seed)
    model = PeerDT(dataset.obs_dim, dataset.act_dim, cfg)
    sampler = training_sampler(cfg, dataset, obs_norm)  # the batches our trainer draws for this seed
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr_at(0, cfg), weight_decay=cfg.train.weight_decay)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = sampler.sample()
        loss = masked_mse(model(batch), batch["act"], batch["mask"])
        optimizer_step(loss, model, optimizer, cfg.train.grad_clip)
        if not torch.isfinite(loss):
            raise RuntimeError(f"peer loss became {loss.item()} at step {step + 1}")
    return model, time.perf_counter() - start


def step_times(cfg, dataset, obs_norm, repeats: int) -> dict:
    """One training step (sample, forward, backward, clip, AdamW) of each model, timed round-robin."""
    ours = build_model(cfg, dataset.obs_dim, dataset.act_dim)
    peer = PeerDT(dataset.obs_dim, dataset.act_dim, cfg)
    sampler = WindowSampler(
        dataset, obs_norm, cfg.data.context_len, cfg.train.batch_size, cfg.data.rtg_scale, cfg.data.max_ep_len, seed=0
    )

    def stepper(model):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
        model.train()

        def step():
            batch = sampler.sample()
            optimizer_step(masked_mse(model(batch), batch["act"], batch["mask"]), model, opt, 0.25)

        return step

    times = time_interleaved({"ours": stepper(ours), "peer": stepper(peer)}, repeats, torch.device("cpu"), warmup=3)
    return {
        "ms": {k: round(v * 1e3, 2) for k, v in times.items()},
        "peer_over_ours": round(times["peer"] / times["ours"], 3),
        "params": {
            "ours": sum(p.numel() for p in ours.parameters()),
            "peer": sum(p.numel() for p in peer.parameters()),
        },
    }


def score(results: list[dict]) -> dict:
    return {str(int(r["target_return"])): r["normalized_mean"] for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="bench/hopper/medium-v0", help="Minari id or D4RL hdf5 (a+b composes)")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="runs/peer-dt", help="our runs go to OUT/ours/seedN")
    parser.add_argument("--time-repeats", type=int, default=20)
    parser.add_argument("--time-only", action="store_true", help="measure step times only")
    parser.add_argument(
        "--set", action="append", default=[], help="extra dotted overrides for both (e.g. train.lr=0.0006)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = [
        f"data.source=[{args.source}]",
        *DT_RECIPE,
        f"train.steps={args.steps}",
        "eval.mode=window",
        f"eval.episodes={args.episodes}",
        "train.checkpoint_every=1000",
        *args.set,
    ]
    cfg = load_config(None, overrides)
    dataset = load_source(cfg.data.source, cfg.data.env_id, cfg.data.env_version)
    obs_norm = ObsNormalizer.fit(dataset.episodes)
    out = {
        "machine": machine_info(),
        "source": args.source,
        "steps": args.steps,
        "overrides": overrides,
        "step_time": step_times(cfg, dataset, obs_norm, args.time_repeats),
    }
    if not args.time_only:
        data = data_state(dataset, obs_norm)
        ctx, targets = policy_context(cfg, data), eval_targets(cfg, data)
        out["behaviour_normalized"] = data["behaviour_normalized"]
        out["runs"] = []
        for seed in args.seeds:
            seed_cfg = load_config(None, overrides + [f"train.seed={seed}", f"name=ours-seed{seed}"])
            start = time.perf_counter()
            summary = train(seed_cfg, Path(args.out) / "ours" / f"seed{seed}", force=True, progress=False)
            ours_s = time.perf_counter() - start
            peer, peer_s = train_peer(seed_cfg, dataset, obs_norm, args.steps)
            peer_results = evaluate_targets(
                peer, ctx, targets, cfg.eval.episodes, "window", cfg.eval.seed, cfg.eval.max_steps, torch.device("cpu")
            )
            run = {
                "seed": seed,
                "ours": {"normalized": score(summary["eval_all_targets"]), "train_eval_s": round(ours_s, 1)},
                "peer": {"normalized": score(peer_results), "train_s": round(peer_s, 1)},
            }
            out["runs"].append(run)
            print(json.dumps(run), flush=True)
        out["summary"] = summarize(out["runs"])
    print(json.dumps(out, indent=1))


def summarize(runs: list[dict]) -> dict:
    from decision_minrnn.experiments.stats import probability_of_improvement, score_stats

    summary = {}
    for target in runs[0]["ours"]["normalized"]:
        ours = [r["ours"]["normalized"][target] for r in runs]
        peer = [r["peer"]["normalized"][target] for r in runs]
        s_ours, s_peer = score_stats(ours), score_stats(peer)
        p, ci = probability_of_improvement(ours, peer)
        summary[target] = {
            "ours": {"mean": s_ours.mean, "ci": s_ours.mean_ci, "seeds": ours},
            "peer": {"mean": s_peer.mean, "ci": s_peer.mean_ci, "seeds": peer},
            "ours_inside_peer_ci": s_peer.mean_ci[0] <= s_ours.mean <= s_peer.mean_ci[1],
            "p_ours_beats_peer": p,
            "p_ci": ci,
        }
    return summary


if __name__ == "__main__":
    main()
