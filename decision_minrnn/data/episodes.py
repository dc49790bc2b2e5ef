"""Offline trajectories from Minari ids, D4RL v2 hdf5 files and their concatenations, as one in-memory form.

Every source becomes an ``OfflineDataset``: a list of ``Episode`` (obs, act, rew, terminated, truncated)
with the env id it evaluates in and the reference scores that normalize its returns. Everything a user
can get wrong (unknown id, missing or corrupt file, missing keys, NaN/inf, empty episodes, dims that do
not match) raises ``DataError`` with one sentence that says what and where.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError, first_line
from ..resources import resolve_data_path
from ..views import ObservationView, ViewError, data_episode_seed
from .scores import RefScores, d4rl_ref_scores, env_id_for, task_of

HDF5_SUFFIXES = (".hdf5", ".h5")
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


@dataclass
class Episode:
    """One trajectory of T steps: obs (T, obs_dim), act (T, act_dim), rew (T,)."""

    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    terminated: bool
    truncated: bool

    def __len__(self) -> int:
        return len(self.rew)

    @property
    def ret(self) -> float:
        return float(self.rew.sum())


@dataclass
class OfflineDataset:
    name: str
    episodes: list[Episode]
    env_id: str | None
    ref_scores: RefScores | None
    parts: list[str] = field(default_factory=list)

    @property
    def obs_dim(self) -> int:
        return self.episodes[0].obs.shape[1]

    @property
    def act_dim(self) -> int:
        return self.episodes[0].act.shape[1]

    @property
    def num_steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    @property
    def task(self) -> str | None:
        return task_of(self.env_id) or task_of(self.name)

    def returns(self) -> np.ndarray:
        return np.array([e.ret for e in self.episodes])

    def describe(self) -> dict:
        """What `datasets info` prints."""
        rets = self.returns()
        lengths = np.array([len(e) for e in self.episodes])
        info = {
            "name": self.name,
            "parts": self.parts or [self.name],
            "episodes": len(self.episodes),
            "steps": int(lengths.sum()),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "episode_length": {"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())},
            "return": {
                "min": float(rets.min()),
                "median": float(np.median(rets)),
                "mean": float(rets.mean()),
                "max": float(rets.max()),
            },
            "env_id": self.env_id,
            "terminated_episodes": int(sum(e.terminated for e in self.episodes)),
            "normalized_behaviour_score": None,
            "reference_scores": None,
        }
        if self.ref_scores is not None:
            info["normalized_behaviour_score"] = float(self.ref_scores.normalize(rets.mean()))
            info["reference_scores"] = {
                "min": self.ref_scores.min,
                "max": self.ref_scores.max,
                "source": self.ref_scores.source,
            }
        return info


def _check_finite(name: str, where: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise DataError(f"{where}: {name} contain NaN or inf (first at step {bad})")


# No MuJoCo locomotion observation, action or per-step reward comes near this; a value beyond it is corrupt data
# (a column scaled by 1e30, a reward of 3e38) that would train a whole budget on garbage before any check fails.
MAX_ABS_VALUE = 1e6


def _check_magnitude(name: str, where: str, array: np.ndarray) -> None:
    big = np.abs(array) > MAX_ABS_VALUE
    if big.any():
        index = tuple(int(i) for i in np.argwhere(big)[0])
        column = f", column {index[1]}" if len(index) > 1 else ""
        raise DataError(
            f"{where}: {name} hold {float(array[index]):.3g} at step {index[0]}{column}, beyond any MuJoCo value "
            f"(|x| > {MAX_ABS_VALUE:g}); the data is corrupt or in other units"
        )


# A MuJoCo locomotion step earns a few reward units (forward speed plus a healthy bonus, minus control costs):
# D4RL's expert returns are at most about 12 a step. Beyond this, a reward is in other units or corrupt.
MAX_TASK_REWARD = 100.0


def check_rewards(dataset: OfflineDataset) -> None:
    """A known locomotion task's per-step rewards must be of its scale: one reward of 9e5 made a behaviour
    score of 266 normalized, which no table should show."""
    if dataset.task is None:
        return
    for i, episode in enumerate(dataset.episodes):
        big = np.abs(episode.rew) > MAX_TASK_REWARD
        if big.any():
            t = int(np.argmax(big))
            raise DataError(
                f"{dataset.name} episode {i} step {t}: reward {float(episode.rew[t]):.3g}, beyond any {dataset.task} "
                f"step (|r| > {MAX_TASK_REWARD:g}); the rewards are corrupt or in other units"
            )


def check_task(name: str, own_task: str | None, env_id: str | None, what: str = "data.env_id") -> None:
    """Data of one task must not be evaluated and scored in another task's environment of the same dims
    (walker2d data in HalfCheetah-v5 would be scored against HalfCheetah's reference returns)."""
    task = task_of(env_id)
    if own_task and task and own_task != task:
        raise DataError(
            f"{name} is {own_task} data but {what}={env_id} is {task}: it would be evaluated and scored as "
            f"{task}; name a {own_task} environment or drop {what}"
        )


def validate_episodes(episodes: list[Episode], where: str) -> None:
    if not episodes:
        raise DataError(f"{where}: no episodes")
    obs_dim, act_dim = episodes[0].obs.shape[1], episodes[0].act.shape[1]
    for i, ep in enumerate(episodes):
        label = f"{where} episode {i}"
        if len(ep) == 0:
            raise DataError(f"{label} has zero length")
        if ep.obs.shape != (len(ep), obs_dim) or ep.act.shape != (len(ep), act_dim):
            raise DataError(
                f"{label}: obs {ep.obs.shape} / act {ep.act.shape} do not match {len(ep)} steps "
                f"of obs_dim {obs_dim}, act_dim {act_dim}"
            )
        _check_finite("observations", label, ep.obs)
        _check_finite("actions", label, ep.act)
        _check_finite("rewards", label, ep.rew)
        _check_magnitude("observations", label, ep.obs)
        _check_magnitude("actions", label, ep.act)
        _check_magnitude("rewards", label, ep.rew)


def _flat_box_dim(space, what: str, dataset_id: str) -> None:
    shape = getattr(space, "shape", None)
    if shape is None or len(shape) != 1:
        raise DataError(f"{dataset_id}: {what} space {space} is not a flat Box; only flat vector spaces are supported")


def _env_id_from_metadata(metadata: dict) -> str | None:
    """The env to evaluate in: Minari's eval_env_spec when the dataset names one, else the env it was
    collected in (both stored as EnvSpec JSON in the metadata)."""
    for key in ("eval_env_spec", "env_spec"):
        spec = metadata.get(key)
        if isinstance(spec, str):
            try:
                env_id = json.loads(spec).get("id")
            except (json.JSONDecodeError, AttributeError):
                continue
            if env_id:
                return env_id
    return None


def minari_root() -> str:
    from minari.storage import datasets_root_dir

    return str(datasets_root_dir.get_dataset_path())


HUB_HOST = "huggingface.co"  # where minari's default remote (the Farama Minari hub) lives


def _check_hub_reachable(dataset_id: str) -> None:
    """Before minari's download: refuse at once where it cannot succeed. huggingface_hub retries a failed
    name lookup five times over about 24 s, printing each retry, before minari gives up."""
    where = f"Minari dataset {dataset_id!r} is not in MINARI_DATASETS_PATH={minari_root()}"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise DataError(f"{where}, and HF_HUB_OFFLINE is set, so it was not downloaded")
    if "hf://" not in os.environ.get("MINARI_REMOTE", "hf://"):
        return  # another remote: minari's own download reports on it
    try:
        socket.getaddrinfo(HUB_HOST, 443)
    except OSError as exc:
        raise DataError(f"{where} and cannot be downloaded: {HUB_HOST} does not resolve ({exc}); no network?") from None


def load_minari(dataset_id: str) -> OfflineDataset:
    """A Minari dataset by id: local first, then minari's download (needs the minari[hf] extra and network)."""
    import minari

    try:
        dataset = minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        _check_hub_reachable(dataset_id)
        try:
            dataset = minari.load_dataset(dataset_id, download=True)
        except Exception as exc:  # download path: missing extra, no network, unknown remote id
            raise DataError(
                f"Minari dataset {dataset_id!r} is not in MINARI_DATASETS_PATH={minari_root()} "
                f"and could not be downloaded ({first_line(exc)})"
            ) from None
    except Exception as exc:
        raise DataError(f"Minari dataset {dataset_id!r} could not be read: {exc}") from None
    _flat_box_dim(dataset.observation_space, "observation", dataset_id)
    _flat_box_dim(dataset.action_space, "action", dataset_id)
    episodes = []
    try:
        for ep in dataset.iterate_episodes():
            # Minari stores T+1 observations (the last is the one after the final action): drop it.
            n = len(ep.rewards)
            episodes.append(
                Episode(
                    obs=np.asarray(ep.observations[:n], dtype=np.float32),
                    act=np.asarray(ep.actions, dtype=np.float32).reshape(n, -1),
                    rew=np.asarray(ep.rewards, dtype=np.float32),
                    terminated=bool(ep.terminations[-1]) if n else False,
                    truncated=bool(ep.truncations[-1]) if n else False,
                )
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"Minari dataset {dataset_id!r} is corrupt: {exc}") from None
    validate_episodes(episodes, dataset_id)

    metadata = dataset.storage.metadata
    env_id = _env_id_from_metadata(metadata)
    ref = None
    if metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
        ref = RefScores(float(metadata["ref_min_score"]), float(metadata["ref_max_score"]), "minari metadata")
        if not ref.max > ref.min:  # every normalized score would be divided by zero or flip its sign
            raise DataError(
                f"Minari dataset {dataset_id!r}: ref_max_score {ref.max:g} is not above ref_min_score {ref.min:g}"
            )
    task = task_of(env_id) or task_of(dataset_id)
    if env_id is None and task is not None:
        env_id = env_id_for(task)
    return OfflineDataset(dataset_id, episodes, env_id, ref or d4rl_ref_scores(task))


def split_flat_arrays(obs, act, rew, terminals, timeouts) -> list[Episode]:
    """Split D4RL's flat arrays into episodes at terminals or timeouts.

    A trailing segment that neither terminates nor times out (a dataset cut at a fixed step count) is kept
    as a truncated episode: its steps are real data.
    """
    ends = np.flatnonzero(np.logical_or(terminals, timeouts))
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends + 1, [len(rew)]])
    episodes = []
    for start, stop in zip(starts, stops):
        if stop <= start:
            continue
        episodes.append(
            Episode(
                obs[start:stop],
                act[start:stop],
                rew[start:stop],
                terminated=bool(terminals[stop - 1]),
                truncated=not bool(terminals[stop - 1]),
            )
        )
    return episodes


def write_d4rl_hdf5(
    path: str | Path, episodes: list[Episode], attrs: dict | None = None, compress: bool = False
) -> Path:
    """Episodes as a D4RL v2 hdf5 file, the layout load_d4rl_hdf5 reads: flat float32 arrays, with the last
    step of each episode flagged in terminals (it terminated) or timeouts (it was cut off)."""
    import h5py

    def last_step_flags(flag_of):
        return np.concatenate(
            [np.arange(len(e)) == len(e) - 1 if flag_of(e) else np.zeros(len(e), bool) for e in episodes]
        )

    arrays = {
        "observations": np.concatenate([e.obs for e in episodes]).astype(np.float32),
        "actions": np.concatenate([e.act for e in episodes]).astype(np.float32),
        "rewards": np.concatenate([e.rew for e in episodes]).astype(np.float32),
        "terminals": last_step_flags(lambda e: e.terminated),
        "timeouts": last_step_flags(lambda e: not e.terminated),
    }
    options = {"compression": "gzip", "compression_opts": 9, "shuffle": True} if compress else {}
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value, **options)
        f.attrs.update(attrs or {})
    return Path(path)


def load_d4rl_hdf5(path: str, env_id: str | None = None, env_version: str = "v5") -> OfflineDataset:
    """A D4RL v2 hdf5 file (keys observations, actions, rewards, terminals, timeouts).

    The env id comes from ``env_id`` or from the task in the file name (hopper-medium-v2.hdf5 -> Hopper-v5).
    """
    import h5py

    file = Path(path)
    if not file.is_file():
        raise DataError(f"D4RL file {path} does not exist")
    try:
        with h5py.File(file, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            if missing:
                raise DataError(f"D4RL file {path} lacks key(s) {', '.join(missing)} (needs {', '.join(D4RL_KEYS)})")
            arrays = {k: np.asarray(f[k][()]) for k in D4RL_KEYS}
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"D4RL file {path} is not a readable hdf5 file ({exc})") from None
    n = len(arrays["rewards"])
    if any(len(v) != n for v in arrays.values()):
        sizes = ", ".join(f"{k}={len(v)}" for k, v in arrays.items())
        raise DataError(f"D4RL file {path}: arrays have different lengths ({sizes})")
    if n == 0:
        raise DataError(f"D4RL file {path} holds zero steps")
    for key, value in arrays.items():
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise DataError(f"D4RL file {path}: {key} has dtype {value.dtype}, not numbers")
    obs = arrays["observations"].astype(np.float32).reshape(n, -1)
    act = arrays["actions"].astype(np.float32).reshape(n, -1)
    rew = arrays["rewards"].astype(np.float32).reshape(n)
    episodes = split_flat_arrays(
        obs, act, rew, arrays["terminals"].astype(bool).reshape(n), arrays["timeouts"].astype(bool).reshape(n)
    )
    validate_episodes(episodes, path)
    check_task(file.name, task_of(file.name), env_id)
    task = task_of(env_id) or task_of(file.name)
    if env_id is None and task is not None:
        env_id = env_id_for(task, env_version)
    return OfflineDataset(file.stem, episodes, env_id, d4rl_ref_scores(task))


def is_hdf5_path(source: str) -> bool:
    return source.endswith(HDF5_SUFFIXES) or os.path.sep in source and Path(source).is_file()


def compose(datasets: list[OfflineDataset], env_id: str | None = None) -> OfflineDataset:
    """Concatenate datasets (D4RL's medium-expert = medium + expert). Spaces and env ids must agree, and a part
    whose environment is unknown is not given another part's: name it (env_id, here data.env_id)."""
    first = datasets[0]
    unknown = [d.name for d in datasets if not d.env_id]
    if env_id is None and unknown and len(unknown) < len(datasets):
        raise DataError(
            f"cannot tell which environment {unknown[0]} comes from, so it cannot be composed with "
            f"{next(d.name for d in datasets if d.env_id)}; put the task in its file name or set data.env_id"
        )
    for other in datasets[1:]:
        if (other.obs_dim, other.act_dim) != (first.obs_dim, first.act_dim):
            raise DataError(
                f"cannot compose {first.name} (obs {first.obs_dim}, act {first.act_dim}) with "
                f"{other.name} (obs {other.obs_dim}, act {other.act_dim}): dims differ"
            )
        if first.env_id and other.env_id and first.env_id != other.env_id:
            raise DataError(
                f"cannot compose {first.name} ({first.env_id}) with {other.name} ({other.env_id}): "
                "different environments"
            )
    env_id = env_id or next((d.env_id for d in datasets if d.env_id), None)
    ref = next((d.ref_scores for d in datasets if d.ref_scores), None)
    parts = [p for d in datasets for p in (d.parts or [d.name])]
    return OfflineDataset(
        "+".join(d.name for d in datasets), [e for d in datasets for e in d.episodes], env_id, ref, parts
    )


def load_source(source: str | list[str], env_id: str | None = None, env_version: str = "v5") -> OfflineDataset:
    """One source or several: a Minari id, a D4RL hdf5 path, a list of them, or 'a+b' (concatenation)."""
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    sources = [resolve_data_path(part.strip(), None) for item in items for part in str(item).split("+") if part.strip()]
    if not sources:
        raise DataError("no dataset source given")
    loaded = []
    for s in sources:
        if is_hdf5_path(s):
            loaded.append(load_d4rl_hdf5(s, env_id, env_version))
        else:
            loaded.append(load_minari(s))
            check_task(s, loaded[-1].task, env_id)
    dataset = loaded[0] if len(loaded) == 1 else compose(loaded, env_id)
    if env_id is not None:
        dataset.env_id = env_id
    check_rewards(dataset)
    return dataset


def data_view(observe: str, flicker_p: float | None, dataset: OfflineDataset) -> ObservationView:
    """The view `data.observe` names, for this dataset's task and dims; a view that cannot apply is a DataError."""
    try:
        where = dataset.env_id or dataset.name
        return ObservationView.build(observe, dataset.obs_dim, dataset.task, flicker_p, where=where)
    except ViewError as exc:
        raise DataError(str(exc)) from None


def with_view(dataset: OfflineDataset, view: ObservationView) -> OfflineDataset:
    """The dataset as the model sees it: every episode's observations through the view (flicker: episode i's
    drops from the dataset's fixed seed, views.data_episode_seed)."""
    if view.name == "full":
        return dataset
    episodes = [
        replace(e, obs=view.episode(e.obs, data_episode_seed(dataset.name, i))) for i, e in enumerate(dataset.episodes)
    ]
    return replace(dataset, episodes=episodes)
