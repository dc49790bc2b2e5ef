"""Run an exported policy (decision-minrnn export) with numpy and onnxruntime only: no torch import.

    from decision_minrnn.onnx_runner import OnnxPolicy
    policy = OnnxPolicy("policy.onnx")                  # reads policy.json beside it
    policy.reset(n=1)                                   # target: the run's first target return
    action = policy.act(obs)                            # then policy.act(obs, reward) at every step

    python -m decision_minrnn.onnx_runner policy.onnx --episodes 10 --seed 0   # roll it out in Gymnasium

This file imports nothing from torch or the rest of the package but views.py and policy_inputs.py (numpy only,
loaded from this file's own folder), so the three can be copied next to the exported files and used on their
own (numpy, onnxruntime; gymnasium for the command line).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np


def _load_beside(module: str):
    """decision_minrnn/<module>.py from this file's folder (in the package, or copied beside this file): the
    torch Policy's own code (the observation view, the input checks), loaded without the package."""
    name = f"decision_minrnn.{module}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        f"_decision_minrnn_{module}", Path(__file__).with_name(f"{module}.py")
    )
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up there
    spec.loader.exec_module(loaded)
    return loaded


views, inputs = _load_beside("views"), _load_beside("policy_inputs")


class PolicyInputError(ValueError):
    """A bad exported file or a bad observation / reward: one line, as decision_minrnn.policy.Policy's errors."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class OnnxPolicy:
    """The same bookkeeping as decision_minrnn.policy.Policy (normalization, return-to-go, timestep,
    previous action, state), around the exported one-step graph, with the same input checks: a non-finite
    observation or reward, or a non-finite action out of the graph, is a PolicyInputError, never a NaN action."""

    def __init__(self, onnx_path: str | Path, target_return: float | None = None, threads: int = 1):
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        meta_path = onnx_path.with_suffix(".json")
        try:
            self.meta = m = json.loads(meta_path.read_text())
            self.obs_dim, self.act_dim, self.env_id = int(m["obs_dim"]), int(m["act_dim"]), m["env_id"]
            # An export from before views recorded none: the model saw the full observation.
            self.view = views.ObservationView.from_dict(m.get("view"), self.obs_dim)
            self.env_obs_dim = self.view.env_obs_dim
            if self.view.obs_dim != self.obs_dim:
                raise ValueError(f"its {self.view.name} view gives {self.view.obs_dim} dims, not {self.obs_dim}")
            self.mean = np.asarray(m["obs_mean"], dtype=np.float32).reshape(self.obs_dim)
            self.std = np.asarray(m["obs_std"], dtype=np.float32).reshape(self.obs_dim)
            self.low = np.asarray(m["action_low"], dtype=np.float32).reshape(self.act_dim)
            self.high = np.asarray(m["action_high"], dtype=np.float32).reshape(self.act_dim)
            first_target = float(m["target_returns"][0])
            float(m["rtg_scale"]), int(m["max_ep_len"]), list(m["state"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise PolicyInputError(f"{meta_path} is not the metadata of an export ({_first_line(exc)})") from None
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise PolicyInputError(f"{meta_path}: obs_mean / obs_std must be finite, with every std > 0")
        # the caller's target is checked as the caller's, not blamed on the metadata
        target = first_target if target_return is None else target_return
        self.target_return = inputs.check_target_return(target, PolicyInputError)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds for a bad or truncated file
            raise PolicyInputError(f"{onnx_path} is not a readable ONNX model ({_first_line(exc)})") from None
        expected = m.get("onnx_sha256")  # exports before the digest was kept have none
        try:
            digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        except OSError as exc:
            raise PolicyInputError(f"{onnx_path} cannot be read ({_first_line(exc)})") from None
        if expected is not None and digest != expected:
            raise PolicyInputError(
                f"{meta_path} belongs to another export than {onnx_path} (the graph's SHA-256 differs); "
                "use the pair one export wrote"
            )
        self.n = 0

    def reset(self, n: int = 1, target_return: float | None = None, seeds=None) -> None:
        """seeds: the environments' reset seeds, which a flicker view draws its dropped frames from (default
        0..n-1), as Policy.reset. Refuses what Policy.reset refuses."""
        n = inputs.check_episode_count(n, PolicyInputError)
        target = self.target_return if target_return is None else target_return
        target = inputs.check_target_return(target, PolicyInputError)
        self.n = n
        self.view_stream = self.view.start(n, range(n) if seeds is None else list(seeds))
        self.rtg = np.full((n, 1), target / self.meta["rtg_scale"], dtype=np.float32)
        self.t = np.zeros(n, dtype=np.int64)
        self.prev_action = np.zeros((n, self.act_dim), dtype=np.float32)
        self.state = {}
        for s in self.meta["state"]:
            shape = list(s["shape"])
            shape[s["batch_dim"]] = n
            self.state[s["input"]] = np.zeros(shape, dtype=np.float32)

    def act(self, obs, reward=None) -> np.ndarray:
        """obs (obs_dim,) or (N, obs_dim) raw; reward (N,) of the previous step or None at the first step."""
        obs, single = inputs.check_observations(obs, self.env_obs_dim, self.view.name, PolicyInputError)
        if not inputs.check_same_batch(obs.shape[0], self.n, reward, PolicyInputError):
            self.reset(obs.shape[0])
        rtg = self.rtg
        if reward is not None:
            r = inputs.check_rewards(reward, self.n, PolicyInputError)
            # RTG_{t+1} = RTG_t - r_t / scale, in float32 as the torch policy computes it
            rtg = rtg - r.astype(np.float32)[:, None] / np.float32(self.meta["rtg_scale"])
        shown = self.view_stream.step(obs, self.t)
        feeds = {
            "obs": (shown - self.mean) / self.std,
            "rtg": rtg,
            "timestep": np.minimum(self.t, self.meta["max_ep_len"] - 1),
            "prev_action": self.prev_action,
            "first": (self.t == 0).astype(np.float32)[:, None],
            **self.state,
        }
        try:
            outputs = self.session.run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own kinds: the graph does not fit its JSON
            raise PolicyInputError(
                f"the ONNX graph does not fit its metadata ({_first_line(exc)}); export the pair again"
            ) from None
        if not np.isfinite(outputs[0]).all():
            raise PolicyInputError("the policy produced a non-finite action (NaN or inf weights or inputs?)")
        self.rtg = rtg  # a refused step changes nothing
        action = np.clip(outputs[0], self.low, self.high)
        for s, value in zip(self.meta["state"], outputs[1:]):
            self.state[s["input"]] = value
        self.prev_action, self.t = action, self.t + 1
        return action[0] if single else action


def rollout(policy: OnnxPolicy, episodes: int, seed: int, target_return: float | None, max_steps: int) -> dict:
    """N episodes in lock-step, episode i seeded seed + i, as `decision-minrnn evaluate` runs them."""
    import gymnasium as gym

    envs = [gym.make(policy.env_id, max_episode_steps=max_steps) for _ in range(episodes)]
    model_s = env_s = 0.0
    try:
        policy.reset(episodes, target_return, seeds=[seed + i for i in range(episodes)])
        obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
        returns, active, reward = np.zeros(episodes), np.ones(episodes, dtype=bool), None
        for _ in range(max_steps):
            if not active.any():
                break
            start = time.perf_counter()
            action = policy.act(obs, reward)
            model_s += time.perf_counter() - start
            reward = np.zeros(episodes)
            start = time.perf_counter()
            for i in np.flatnonzero(active):
                o, r, terminated, truncated, _ = envs[i].step(action[i])
                obs[i], reward[i] = o, r
                returns[i] += r
                active[i] = not (terminated or truncated)
            env_s += time.perf_counter() - start
    finally:
        for env in envs:
            env.close()
    result = {
        "target_return": policy.target_return if target_return is None else float(target_return),
        "returns": returns.tolist(),
        "return_mean": float(returns.mean()),
        "timing": {"model_seconds": model_s, "env_seconds": env_s},
    }
    ref = policy.meta.get("ref_scores")
    if ref:
        normalized = 100.0 * (returns - ref["min"]) / (ref["max"] - ref["min"])
        result.update(normalized=normalized.tolist(), normalized_mean=float(normalized.mean()))
    return result


class _DefaultsShown(argparse.HelpFormatter):
    """An option's default in its help where it has one (this file cannot import the package's CLI)."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return action.help
        return f"{action.help} (default: {action.default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="roll out an exported decision-minrnn policy (numpy + onnxruntime)",
        formatter_class=_DefaultsShown,
    )
    parser.add_argument("onnx", help="the exported policy.onnx (its policy.json beside it)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes at once, episode i seeded SEED + i")
    parser.add_argument("--seed", type=int, default=0, help="the first episode's seed")
    parser.add_argument(
        "--target-return", type=float, default=None, help="raw target return (default: the run's first target)"
    )
    parser.add_argument("--max-steps", type=int, default=1000, help="steps per episode at most")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.onnx)
    if not path.is_file() or not path.with_suffix(".json").is_file():
        print(f"error: {path} and {path.with_suffix('.json')} must both exist", file=sys.stderr)
        return 2
    if args.episodes < 1 or args.max_steps < 1:
        print("error: --episodes and --max-steps must be >= 1", file=sys.stderr)
        return 2
    try:
        result = rollout(OnnxPolicy(path), args.episodes, args.seed, args.target_return, args.max_steps)
    except PolicyInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
