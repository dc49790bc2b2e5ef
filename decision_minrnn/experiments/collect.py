"""A sweep's runs as the report reads them back: final.json (the score of the last checkpoint, and of the
best one on the test episodes where the run kept one), metrics.jsonl (the learning curves) and
target_sweep.json (the conditioning curve). Runs that cannot be used are kept with the reason, never dropped
silently. measure_runs writes a small per-run file beside final.json for the scripts that measure a checkpoint
once."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..choices import backbone_names
from ..errors import CheckpointError, DataError, UsageError
from ..rundir import CONFIG, FINAL, SWEEP_FILE, RunDir, write_atomic


@dataclass
class Sweep:
    """One run's sweep: normalized target -> normalized achieved mean, and the data's reference lines."""

    targets: list[float]
    achieved: list[float]
    behaviour: float | None  # the data's mean episode, normalized
    best_episode: float | None  # the data's best episode, normalized
    episodes: int
    step: int
    source: str | None = None  # the training data's name; "a+b" for a composed one (medium-expert)
    # per target, every episode's normalized score (None where the file has only the means): a mean of 60
    # can be every episode at 60 or half the episodes at 100 and half at 20, and only these tell which
    episode_scores: list[list[float]] | None = None


def read_sweep(run_dir: Path) -> tuple[Sweep | None, str | None]:
    """(the sweep, None), (None, why it cannot be used), or (None, None) where the run has none."""
    path = RunDir(run_dir).sweep()
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text())
        info, results = data["target_sweep"], data["results"]
        targets = [float(r["target_normalized"]) for r in results]
        achieved = [float(r["normalized_mean"]) for r in results]
        normalized = info.get("episode_returns_normalized") or {}
        per_episode = [r.get("normalized") for r in results]
        episode_scores = (
            [[float(v) for v in scores] for scores in per_episode]
            if all(isinstance(scores, list) and scores for scores in per_episode)
            else None
        )
        sweep = Sweep(
            targets=targets,
            achieved=achieved,
            behaviour=info.get("behaviour_normalized"),
            best_episode=normalized.get("max"),
            episodes=int(info["episodes"]),
            step=int(data["step"]),
            source=None if info.get("dataset") is None else str(info["dataset"]),
            episode_scores=episode_scores,
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None, f"{SWEEP_FILE} unreadable or without normalized scores; its conditioning curve is left out"
    every_episode = [v for scores in episode_scores or [] for v in scores]
    if not all(math.isfinite(v) for v in targets + achieved + every_episode):
        return None, f"{SWEEP_FILE} holds a non-finite score; its conditioning curve is left out"
    return sweep, None


@dataclass(frozen=True, order=True)
class Target:
    """A target return as a key: in tenths of a return (an int), so that the 3600 of final.json and the 3600.0
    of metrics.jsonl are one target across runs and files, and no float is ever a dict key."""

    tenths: int

    @classmethod
    def of(cls, value: float) -> Target:
        return cls(round(float(value) * 10))

    @property
    def value(self) -> float:
        return self.tenths / 10


@dataclass
class Run:
    dataset: str
    backbone: str  # or a grid's arm where it is not the backbone's name (_arm)
    seed: int | None
    normalized: float
    steps: int
    run_dir: str
    reference: str | None = None
    behaviour: float | None = None  # the dataset's behaviour policy, normalized (None for older runs)
    target_return: float | None = None  # the headline target, whose score is `normalized`
    curves: dict[Target, list[tuple[int, float]]] = field(default_factory=dict)  # every evaluated target
    by_target: dict[Target, float | None] = field(default_factory=dict)
    test_episodes: int | None = None  # eval.final_episodes of a run scored on test episodes, else None
    test_seed: int | None = None  # the first of those episodes' seeds (eval.test_seed)
    best_step: int | None = None  # train.keep_best's checkpoint
    best_test: float | None = None  # its headline score on the test episodes (None without them)
    sweep: Sweep | None = None  # RUN/target_sweep.json, evaluate --target-sweep's
    # What makes two runs' scores comparable (issue 36): the data itself (not its label), the headline target,
    # the episodes scored, the budget, the precision, the token layout and the observation view. None where a
    # run's files do not say (runs written before the field existed).
    protocol: dict = field(default_factory=dict)

    @property
    def headline(self) -> Target | None:
        """The headline target (None for a run whose final.json does not say)."""
        return None if self.target_return is None else Target.of(self.target_return)

    @property
    def curve(self) -> list[tuple[int, float]]:
        """(step, score) at the headline target."""
        return self.curves.get(self.headline, [])

    @property
    def max_over_training(self) -> float | None:
        """The best headline score of any training evaluation: what 'best' means where a paper takes the max
        of its learning curve. Chosen and scored on the same episodes, so optimistic by construction."""
        return max((score for _, score in self.curve), default=None)


@dataclass
class Skipped:
    run_dir: str
    reason: str


def _read_curves(metrics: Path, notes: list[Skipped]) -> dict[Target, list[tuple[int, float]]]:
    """Per target return: (step, normalized score) of every evaluation in metrics.jsonl, by step."""
    by_target: dict[Target, dict[int, float]] = defaultdict(dict)
    for number, line in enumerate(metrics.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            if record.get("normalized_mean") is not None:
                # last write wins after a resume
                by_target[Target.of(record["target_return"])][int(record["step"])] = float(record["normalized_mean"])
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            notes.append(
                Skipped(str(metrics.parent), f"metrics.jsonl line {number} unreadable; the curve uses the rest")
            )
    return {target: sorted(by_step.items()) for target, by_step in by_target.items()}


def _label_before_data_label(summary: dict) -> str:
    """The dataset label of a run written before final.json had one (data.label): grid runs were named
    <dataset label>/<backbone>/seed<seed>, other runs are reported under the data's name."""
    name_parts = str(summary.get("name", "")).split("/")
    return name_parts[0] if len(name_parts) == 3 else str(summary.get("dataset"))


def _arm(summary: dict) -> str:
    """What a report compares: the backbone, or a grid's arm (<label>/<arm>/seed<N>: one backbone trained two
    ways, configs/grids/memory.yaml), whose runs must not be pooled with the same backbone's other arm."""
    name_parts = str(summary.get("name", "")).split("/")
    if len(name_parts) == 3 and name_parts[2].startswith("seed") and name_parts[1] != summary["backbone"]:
        return name_parts[1]
    return str(summary["backbone"])


def _run_from_final(final: Path, skipped: list[Skipped]) -> Run | None:
    run_dir = str(final.parent)
    try:
        summary = json.loads(final.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        skipped.append(Skipped(run_dir, f"final.json unreadable ({type(exc).__name__})"))
        return None
    if not isinstance(summary, dict):
        skipped.append(Skipped(run_dir, "final.json does not hold a run summary"))
        return None
    if not summary.get("finished"):
        skipped.append(Skipped(run_dir, "unfinished (final.json says finished: false)"))
        return None
    evaluation = summary.get("eval")
    if not isinstance(evaluation, dict) or evaluation.get("normalized_mean") is None:
        skipped.append(Skipped(run_dir, "no normalized evaluation score (eval.episodes=0 or no reference scores)"))
        return None
    try:
        dataset = str(summary["label"]) if "label" in summary else _label_before_data_label(summary)
        run = Run(
            dataset=dataset,
            backbone=_arm(summary),
            seed=summary.get("seed"),
            normalized=float(evaluation["normalized_mean"]),
            target_return=None if evaluation.get("target_return") is None else float(evaluation["target_return"]),
            steps=int(summary["step"]),
            run_dir=run_dir,
            reference=evaluation.get("score_reference"),
            behaviour=summary.get("behaviour_normalized"),
            by_target={
                Target.of(r["target_return"]): r.get("normalized_mean") for r in summary.get("eval_all_targets", [])
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        skipped.append(Skipped(run_dir, f"final.json is missing or mistypes a field ({type(exc).__name__}: {exc})"))
        return None
    if not math.isfinite(run.normalized):  # json.loads reads NaN and Infinity: a score no mean should absorb
        skipped.append(Skipped(run_dir, f"its normalized score is {run.normalized}, not a finite number"))
        return None
    _read_selection(run, summary, skipped)
    run.protocol = _protocol(run, summary, final.parent)
    metrics = RunDir(final.parent).metrics
    if metrics.is_file():
        run.curves = _read_curves(metrics, skipped)
    run.sweep, why = read_sweep(final.parent)
    if run.sweep is not None and run.sweep.step != run.steps:  # an older checkpoint's, or taken mid-training
        run.sweep, why = (
            None,
            (
                f"{SWEEP_FILE} was taken of step {run.sweep.step}, not of final.json's last checkpoint (step "
                f"{run.steps}); its conditioning curve is left out (evaluate --target-sweep again)"
            ),
        )
    if why:
        skipped.append(Skipped(run_dir, why))
    return run


def _protocol(run: Run, summary: dict, run_dir: Path) -> dict:
    layout = None
    config = RunDir(run_dir).config
    try:
        saved = yaml.safe_load(config.read_text()) if config.is_file() else None
        layout = ((saved or {}).get("model") or {}).get("token_layout") if isinstance(saved, dict) else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        pass
    scored = (
        "training evaluations"
        if run.test_episodes is None
        else f"{run.test_episodes} test episodes from seed {run.test_seed}"
    )
    return {
        "data": summary.get("dataset"),
        "target": run.target_return,
        "scored on": scored,
        "steps": run.steps,
        "precision": summary.get("amp"),
        "layout": layout,
        "view": summary.get("observe"),
    }


# The protocol fields two backbones compared on one dataset must share (their budget, precision and layout
# may be what is compared: an arm of whole episodes takes fewer, longer steps on the same timesteps).
SHARED_ACROSS_BACKBONES = ("data", "target", "scored on", "view")


def check_comparable(runs: list[Run]) -> None:
    """Refuse, in one line, a report cell (dataset label x backbone) whose runs differ in protocol, or a dataset
    label whose backbones were scored on different data, targets or episodes: pooled, they would make a table
    that looks right and is not."""
    cells: dict = {}
    for run in runs:
        cells.setdefault((run.dataset, run.backbone), []).append(run)
    for (label, backbone), group in cells.items():
        for key in group[0].protocol:
            values = {str(r.protocol.get(key)) for r in group}
            if len(values) > 1:
                raise DataError(
                    f"{label} / {backbone} mixes runs with different {key} ({', '.join(sorted(values))}); "
                    "report them apart (another folder, or --datasets) instead of pooling them"
                )
    for label in sorted({r.dataset for r in runs}):
        group = [r for r in runs if r.dataset == label]
        for key in SHARED_ACROSS_BACKBONES:
            values = {str(r.protocol.get(key)) for r in group}
            if len(values) > 1:
                raise DataError(
                    f"{label}'s backbones were scored with different {key} ({', '.join(sorted(values))}); "
                    "they cannot be compared in one table"
                )


def _read_selection(run: Run, summary: dict, skipped: list[Skipped]) -> None:
    """The test protocol and the best checkpoint's test score, where final.json has them."""
    protocol, best = summary.get("eval_protocol"), summary.get("best")
    try:
        if isinstance(protocol, dict):
            run.test_episodes = int(protocol["test_episodes"])
            run.test_seed = int(protocol["test_seed"])
        if isinstance(best, dict):
            run.best_step = int(best["step"])
            test = best.get("test")
            if isinstance(test, dict) and test.get("normalized_mean") is not None:
                score = float(test["normalized_mean"])
                run.best_test = score if math.isfinite(score) else None
    except (KeyError, TypeError, ValueError):
        skipped.append(Skipped(run.run_dir, "final.json's eval_protocol or best is malformed; last checkpoint only"))


def collect_runs(runs_dir: Path) -> tuple[list[Run], list[Skipped]]:
    """Every run directory under runs_dir (one holding config.yaml or final.json): the usable runs, and the
    others with the reason they were left out."""
    if not Path(runs_dir).is_dir():
        raise UsageError(f"runs directory {runs_dir} does not exist")
    runs, skipped = [], []
    run_dirs = sorted({p.parent for pattern in (FINAL, CONFIG) for p in Path(runs_dir).rglob(pattern)})
    for run_dir in run_dirs:
        run_files = RunDir(run_dir)
        final = run_files.final
        if not final.exists():
            skipped.append(Skipped(str(run_dir), "unfinished (no final.json yet)"))
            continue
        if not run_files.config.is_file():  # train writes config.yaml first: a lone final.json is a copy
            skipped.append(Skipped(str(run_dir), "not a run directory (a final.json without its config.yaml)"))
            continue
        run = _run_from_final(final, skipped)
        if run is not None:
            runs.append(run)
    return runs, skipped


def read_side_file(run_dir, name: str, remedy: str = "measure it again (--force)") -> dict:
    """A small JSON a script wrote beside final.json (fit_windows.json, target_rule.json, window_score.json,
    machine.json): a truncated or hand-broken one is one DataError line naming it and the remedy, never a
    traceback."""
    path = Path(run_dir) / name
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({type(exc).__name__}); {remedy}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object; {remedy}")
    return data


def measure_runs(runs: list[Run], file_name: str, measure, force: bool = False) -> dict[str, list[str]]:
    """Write RUN/file_name = measure(run) (a JSON object) for each run, keeping a file already there unless
    force: the scripts that measure a checkpoint once and commit the small result beside final.json
    (scripts/fit_windows.py, scripts/target_rule.py). A run whose checkpoints are gone (its small files
    committed elsewhere) is listed, not an error."""
    written, kept, no_checkpoint = [], [], []
    for run in runs:
        path = Path(run.run_dir) / file_name
        if path.is_file() and not force:
            kept.append(run.run_dir)
            continue
        try:
            result = measure(run)
        except CheckpointError:
            no_checkpoint.append(run.run_dir)
            continue
        write_atomic(path, json.dumps(result, indent=1) + "\n")
        written.append(run.run_dir)
    return {"written": written, "kept": kept, "no_checkpoint": no_checkpoint}


def backbones_of(runs) -> list[str]:
    """The backbones present, in the registry's order (choices.BACKBONE_REGISTRY), then any others by name."""
    present, known = {r.backbone for r in runs}, backbone_names()
    return [b for b in known if b in present] + sorted(present - set(known))


def datasets_of(runs) -> list[str]:
    return sorted({r.dataset for r in runs})
