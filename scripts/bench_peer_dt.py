"""Our DT transformer beside an independent Decision Transformer: Hugging Face transformers'
`DecisionTransformerModel`, trained on the same data, batches, recipe and seeds, and scored by our evaluator.

    pip install -e ".[peer]"
    export MINARI_DATASETS_PATH=../shared/bench-data/minari
    python scripts/bench_peer_dt.py --source bench/hopper/medium-v0 --steps 10000 --seeds 0 1 2 --out runs/peer-dt
    python scripts/bench_peer_dt.py --time-only           # step time only, side by side, no training
    python scripts/bench_peer_dt.py --summarize runs/peer-dt/results.jsonl   # intervals over finished runs

Variants (--variants): `ours` (our transformer, torch's default init of the embeddings, as kzl's DT), `ours-gpt2-init`
(the same with model.embed_init=gpt2, the init the peer uses), `peer`, `peer-no-pos` (the peer with its
position-0 vector zeroed and frozen, the one parameter ours lacks) and `ours-peer-init` (our transformer
started from `peer-no-pos`'s initial weights for the seed, with the same dropout stream). With the peer's
weights copied in, our model computes the peer's actions (tests/scripts/test_peer_dt.py), so `peer-no-pos` and
`ours-gpt2-init` differ only in their random draws (the initial values, which follow the same
distributions, and the dropout masks), `peer` also by that learned vector, and `ours-peer-init` from
`peer-no-pos` in nothing but the implementation.

What is shared, so that only the implementation differs:
* data and batches: our loader, normalizer and WindowSampler with the run's seed (right-padded windows
  with a mask; the peer gets the mask as its attention_mask, so real tokens never attend to padding);
* recipe: DT's (kzl/decision-transformer gym/experiment.py): K=20, embed 128, 3 layers, 1 head, ReLU MLP
  4x, dropout 0.1, AdamW lr 1e-4 / weight decay 1e-4, linear warmup (10k steps; over a 10k-step run the rate
  warms up for the whole run, as DT's first 10k steps do), grad clip 0.25, batch 64, interleaved tokens, the
  masked MSE loss; our side is `decision_minrnn.train.train` itself;
* evaluation: our rollouts in window mode (DT's evaluate_episode_rtg), same targets, episodes and seeds.

Prints JSON: per seed and variant the normalized score at each target, the training time and the masked MSE on
1024 fixed training windows (the same for every variant; a fit measure, not a held-out one); the summary
with 95% bootstrap intervals over seeds; the step-time ratio measured round-robin in one process. Each
finished run is also appended to OUT/results.jsonl, so runs of one comparison can be split over processes
and summarized together.
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
from decision_minrnn.data.info import DataInfo
from decision_minrnn.data.normalization import ObsNormalizer
from decision_minrnn.data.sampler import WindowSampler, training_sampler
from decision_minrnn.experiments.stats import DEFAULT_REPS
from decision_minrnn.models import build_model
from decision_minrnn.rollout import evaluate_targets
from decision_minrnn.runs import eval_targets, model_from_checkpoint
from decision_minrnn.train import train
from decision_minrnn.update import adamw, lr_at, masked_mse, optimizer_step

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
    # The peer's loop (train_peer) runs in float32; ours must too, or the default train.amp=auto would train
    # it in bf16 on a CPU with bf16 units and the score comparison would mix precisions. --set overrides it.
    "train.amp=none",
]


class PeerDT(nn.Module):
    """transformers' DecisionTransformerModel behind the interface our window-mode evaluator calls."""

    recurrent = False
    backbone_name = "hf-decision-transformer"

    def __init__(self, obs_dim: int, act_dim: int, cfg, n_positions: int = 1024):
        """n_positions: GPT-2's position table (its users' 1024, enough for K=341 interleaved); a longer
        context needs a larger one (scripts/bench_context.py)."""
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
                n_positions=n_positions,
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


def copy_peer_into_ours(peer: PeerDT, ours: nn.Module) -> None:
    """Load the peer's weights into our transformer DecisionModel of the same config.

    The peer's GPT-2 adds its position-0 embedding (one learned vector) to every token; ours has no such
    vector, so it must be zero for the two to compute the same function. The peer's state and return heads
    have no counterpart (the action loss never trains them)."""
    hf = peer.hf
    if hf.encoder.wpe.weight[0].abs().max() > 0:
        raise ValueError("the peer's position-0 embedding is not zero; ours has no such vector")
    sd = {
        "embed_timestep.weight": hf.embed_timestep.weight[: ours.embed_timestep.num_embeddings],
        "embed_ln.weight": hf.embed_ln.weight,
        "embed_ln.bias": hf.embed_ln.bias,
        "backbone.ln_f.weight": hf.encoder.ln_f.weight,
        "backbone.ln_f.bias": hf.encoder.ln_f.bias,
        "predict_action.0.weight": hf.predict_action[0].weight,
        "predict_action.0.bias": hf.predict_action[0].bias,
    }
    for name in ("embed_return", "embed_state", "embed_action"):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = getattr(hf, name).weight, getattr(hf, name).bias
    # GPT-2's Conv1D stores weights as (in, out): transposed against nn.Linear.
    pairs = {"ln_1": "ln_1", "ln_2": "ln_2", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj"}
    pairs |= {"mlp.c_fc": "mlp.0", "mlp.c_proj": "mlp.2"}
    for i, block in enumerate(hf.encoder.h):
        for theirs, mine in pairs.items():
            module = block.get_submodule(theirs)
            weight = module.weight if theirs.startswith("ln") else module.weight.t()
            sd[f"backbone.blocks.{i}.{mine}.weight"], sd[f"backbone.blocks.{i}.{mine}.bias"] = weight, module.bias
    ours.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=True)


def train_peer(
    cfg, dataset, obs_norm, steps: int, position_vector: bool = True, into_ours: bool = False
) -> tuple[nn.Module, float]:
    """Our trainer's loop (same sampler stream, schedule, clip, loss), the peer model in place of ours.

    position_vector=False zeroes the peer's GPT-2 position table and freezes it, removing the one learned vector
    ours lacks (it duplicates embed_ln's bias, so Adam moves that direction twice as fast, and it adds to the
    clipped gradient norm); the peer then computes exactly our function, and only the draws differ.

    into_ours=True (with position_vector=False) trains our transformer instead, started from the peer's initial
    weights for this seed, with the global generator put back where the peer's training starts, so that its
    dropout draws come from the same stream: the same start as `peer-no-pos`, our model and code after it."""
    torch.manual_seed(cfg.train.seed)
    model = PeerDT(dataset.obs_dim, dataset.act_dim, cfg)
    if not position_vector:
        with torch.no_grad():
            model.hf.encoder.wpe.weight.zero_()
        model.hf.encoder.wpe.weight.requires_grad_(False)
    if into_ours:
        generator = torch.get_rng_state()
        ours = build_model(cfg, dataset.obs_dim, dataset.act_dim)
        copy_peer_into_ours(model, ours)  # refuses a peer whose position vector is not zero
        torch.set_rng_state(generator)
        model = ours
    sampler = training_sampler(cfg, dataset, obs_norm)  # the batches our trainer draws for this seed
    optimizer = adamw(model, cfg)  # the optimizer our trainer builds
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


def step_times(cfg, dataset, obs_norm, repeats: int, bf16: bool | None = None) -> dict:
    """One training step (sample, forward, backward, clip, AdamW) of each model, timed round-robin in one
    process: the peer, our transformer and our minGRU under DT's recipe, ours also with the fast dropout
    masks (model.dropout_impl=fast); every one in float32 and, where the CPU has native bf16 (or bf16=True),
    under bf16 autocast as well ("_bf16"). Ratios are the peer's float32 / bf16 step over each of ours."""
    from dataclasses import replace

    from decision_minrnn.device import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    bf16 = native if bf16 is None else bf16
    models = {"peer": PeerDT(dataset.obs_dim, dataset.act_dim, cfg)}
    for backbone in ("transformer", "mingru"):
        for impl in ("torch", "fast"):
            model_cfg = replace(cfg, model=replace(cfg.model, backbone=backbone, dropout_impl=impl))
            label = f"ours_{backbone}" + ("_fast_dropout" if impl == "fast" else "")
            models[label] = build_model(model_cfg, dataset.obs_dim, dataset.act_dim)
    sampler = WindowSampler(
        dataset, obs_norm, cfg.data.context_len, cfg.train.batch_size, cfg.data.rtg_scale, cfg.data.max_ep_len, seed=0
    )

    def stepper(model, amp):
        opt = adamw(model, cfg)
        model.train()

        def step():
            batch = sampler.sample()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = masked_mse(model(batch), batch["act"], batch["mask"])
            optimizer_step(loss, model, opt, 0.25)

        return step

    fns = {name: stepper(model, False) for name, model in models.items()}
    if bf16:
        fns |= {f"{name}_bf16": stepper(model, True) for name, model in models.items()}
    times = time_interleaved(fns, repeats, torch.device("cpu"), warmup=3)
    ratios = {f"{name}_over_peer": round(t / times["peer"], 3) for name, t in times.items() if name != "peer"}
    if bf16:
        ratios |= {
            f"{name}_over_peer_bf16": round(t / times["peer_bf16"], 3)
            for name, t in times.items()
            if name.endswith("_bf16") and name != "peer_bf16"
        }
    return {
        "ms": {k: round(v * 1e3, 2) for k, v in times.items()},
        "cpu_native_bf16": native,
        "bf16_timed": bf16,
        "ratios": ratios,
        "params": {
            "ours_transformer": sum(p.numel() for p in models["ours_transformer"].parameters()),
            "peer": sum(p.numel() for p in models["peer"].parameters()),
        },
    }


VARIANTS = {
    "ours": [],
    "ours-gpt2-init": ["model.embed_init=gpt2"],
    "peer": [],
    "peer-no-pos": [],
    "ours-peer-init": [],
}
# The variants trained by train_peer: (position_vector, into_ours).
PEER_LOOP = {"peer": (True, False), "peer-no-pos": (False, False), "ours-peer-init": (False, True)}


def score(results: list[dict]) -> dict:
    return {str(int(r["target_return"])): r["normalized_mean"] for r in results}


def fixed_windows_mse(model: nn.Module, batch: dict) -> float:
    """Masked action MSE on fixed training windows, dropout off: how well the model fits the data, a less noisy
    signal than a rollout score (but not a held-out one)."""
    model.eval()
    with torch.no_grad():
        return round(masked_mse(model(batch), batch["act"], batch["mask"]).item(), 5)


def run_variant(variant: str, seed: int, overrides: list[str], args, dataset, obs_norm, fixed_windows) -> dict:
    seed_cfg = load_config(None, overrides + VARIANTS[variant] + [f"train.seed={seed}", f"name={variant}-seed{seed}"])
    start = time.perf_counter()
    if variant in PEER_LOOP:
        data = DataInfo.of(dataset, obs_norm)
        model, _ = train_peer(seed_cfg, dataset, obs_norm, args.steps, *PEER_LOOP[variant])
        results = evaluate_targets(
            model,
            seed_cfg,
            data,
            eval_targets(seed_cfg, data),
            seed_cfg.eval.episodes,
            "window",
            seed_cfg.eval.seed,
            seed_cfg.eval.max_steps,
            torch.device("cpu"),
        )
    else:
        run_dir = Path(args.out) / variant / f"seed{seed}"
        results = train(seed_cfg, run_dir, force=True, progress=False)["eval_all_targets"]
        model = model_from_checkpoint(run_dir, "cpu")[3]
    return {
        "seed": seed,
        "variant": variant,
        "normalized": score(results),
        "fixed_windows_mse": fixed_windows_mse(model, fixed_windows),
        "train_eval_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="bench/hopper/medium-v0", help="Minari id or D4RL hdf5 (a+b composes)")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="runs/peer-dt", help="our runs go to OUT/VARIANT/seedN")
    parser.add_argument("--time-repeats", type=int, default=20)
    parser.add_argument("--time-only", action="store_true", help="measure step times only")
    parser.add_argument("--no-time", action="store_true", help="skip the step-time measurement")
    parser.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="also time every model under bf16 autocast: auto = where the CPU has native bf16",
    )
    parser.add_argument("--summarize", metavar="RESULTS_JSONL", help="only summarize finished runs, train nothing")
    parser.add_argument(
        "--set", action="append", default=[], help="extra dotted overrides for both (e.g. train.lr=0.0006)"
    )
    args = parser.parse_args()
    if args.summarize:
        runs = [json.loads(line) for line in Path(args.summarize).read_text().splitlines() if line.strip()]
        print(json.dumps(summarize(runs), indent=1))
        return
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
    out = {"machine": machine_info(), "source": args.source, "steps": args.steps, "overrides": overrides}
    if not args.no_time:
        bf16 = {"auto": None, "on": True, "off": False}[args.bf16]
        out["step_time"] = step_times(cfg, dataset, obs_norm, args.time_repeats, bf16)
    if not args.time_only:
        out["behaviour_normalized"] = DataInfo.of(dataset, obs_norm).behaviour_normalized
        fixed_windows = WindowSampler(
            dataset, obs_norm, cfg.data.context_len, 1024, cfg.data.rtg_scale, cfg.data.max_ep_len, seed=12345
        ).sample()
        results_file = Path(args.out) / "results.jsonl"
        results_file.parent.mkdir(parents=True, exist_ok=True)
        out["runs"] = []
        for seed in args.seeds:
            for variant in args.variants:
                run = run_variant(variant, seed, overrides, args, dataset, obs_norm, fixed_windows)
                out["runs"].append(run)
                with results_file.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                print(json.dumps(run), flush=True)
        out["summary"] = summarize(out["runs"])
    print(json.dumps(out, indent=1))


def summarize(runs: list[dict], reps: int = DEFAULT_REPS) -> dict:
    """Per target and variant: mean with its 95% bootstrap interval over seeds, and every seed's score; for each
    of our variants, whether its mean lies inside the peer's interval, P(variant > peer) and the exact rank
    test's p-value (at three seeds a bootstrap interval is narrow; the rank test says what the seeds support);
    under "pairs", P(X > Y) and the rank test for every pair of variants with more than one seed each.
    reps: bootstrap resamples (the tests take fewer; the numbers in docs/results.md used the default)."""
    from decision_minrnn.experiments.stats import probability_of_improvement, rank_test_p, score_stats

    by_variant: dict[str, dict[int, dict]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], {})[run["seed"]] = run
    summary = {}
    for target in next(iter(runs))["normalized"]:
        rows = {}
        for variant, seeds in by_variant.items():
            scores = [seeds[s]["normalized"][target] for s in sorted(seeds)]
            stats = score_stats(scores, reps=reps)
            rows[variant] = {
                "n": len(scores),
                "mean": stats.mean,
                "ci": stats.mean_ci if len(scores) > 1 else None,
                "seeds": {s: seeds[s]["normalized"][target] for s in sorted(seeds)},
                "fixed_windows_mse": [seeds[s].get("fixed_windows_mse") for s in sorted(seeds)],
            }
        peer = rows.get("peer")
        for variant, row in rows.items():
            if variant == "peer" or peer is None or peer["ci"] is None:
                continue
            row["inside_peer_ci"] = peer["ci"][0] <= row["mean"] <= peer["ci"][1]
            if row["n"] > 1:
                mine = list(row["seeds"].values())
                theirs = list(peer["seeds"].values())
                row["p_beats_peer"], row["p_ci"] = probability_of_improvement(mine, theirs, reps=reps)
                row["rank_test_p"] = rank_test_p(mine, theirs)
        # Every other pair too: peer-no-pos is read against ours-gpt2-init as much as against the peer.
        pairs = []
        for i, a in enumerate(rows):
            for b in list(rows)[i + 1 :]:
                if rows[a]["n"] > 1 and rows[b]["n"] > 1:
                    x, y = list(rows[a]["seeds"].values()), list(rows[b]["seeds"].values())
                    p, ci = probability_of_improvement(x, y, reps=reps)
                    pairs.append({"x": a, "y": b, "p_x_beats_y": p, "p_ci": ci, "rank_test_p": rank_test_p(x, y)})
        summary[target] = {**rows, "pairs": pairs}
    return summary


if __name__ == "__main__":
    main()
