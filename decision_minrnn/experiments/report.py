"""`decision-minrnn report` and `compare`: collect a sweep's runs (collect.py), analyse them (analysis.py,
selection.py, conditioning.py), write the tables (tables.py) and the figures (figures.py, conditioning.py).

A reviewer's report: per dataset x backbone the mean and IQM with 95% stratified-bootstrap intervals, the
sample std, n and every seed's score; an aggregate over datasets; the probability that each minRNN beats
the DT transformer; learning curves and score plots. The headline is the last checkpoint's score at the first
target return, as DT's tables report; the best checkpoint appears only beside it, labelled. Runs that cannot
be used are listed with the reason, never dropped silently. The published D4RL columns are printed beside
ours and labelled as such, since datasets that are not D4RL's (e.g. the bench data) are not comparable in
absolute terms.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..errors import DataError, UsageError
from ..rundir import earlier_output, write_atomic
from .analysis import analyse, compare_runs
from .collect import SHARED_ACROSS_BACKBONES, Run, Skipped, check_comparable, collect_runs
from .conditioning import markdown_conditioning, plot_conditioning, with_part_references
from .figures import plot_learning_curves, plot_scores
from .selection import markdown_last_best
from .stats import DEFAULT_REPS
from .tables import markdown_comparison, markdown_curves, markdown_report, markdown_targets_table, write_csv


def _usable_runs(runs_dir: Path) -> tuple[list[Run], list[Skipped]]:
    """collect_runs, or one DataError line when the directory is missing or holds no usable run."""
    if not runs_dir.is_dir():
        raise DataError(f"runs directory {runs_dir} does not exist")
    runs, skipped = collect_runs(runs_dir)
    if not runs:
        reasons = f" ({len(skipped)} skipped: {skipped[0].run_dir}: {skipped[0].reason}...)" if skipped else ""
        raise DataError(f"no finished runs with an evaluation under {runs_dir}{reasons}")
    check_comparable(runs)
    return runs, skipped


def _check_sides(runs_a: list[Run], runs_b: list[Run], labels) -> None:
    """An ablation compares two sides of one protocol: the same data, target and scored episodes per cell."""
    first_b = {(r.dataset, r.backbone): r for r in runs_b}
    for run in runs_a:
        other = first_b.get((run.dataset, run.backbone))
        for key in SHARED_ACROSS_BACKBONES if other is not None else ():
            if str(run.protocol.get(key)) != str(other.protocol.get(key)):
                raise DataError(
                    f"{run.dataset} / {run.backbone}: {labels[0]} has {key} {run.protocol.get(key)}, {labels[1]} "
                    f"has {other.protocol.get(key)}; they cannot be compared"
                )


def check_reps(reps: int) -> None:
    if reps < 1:
        raise UsageError(f"--reps must be >= 1 (bootstrap resamples), got {reps}")


REPORT_FILES = ("table.md", "table.csv", "stats.json", "scores.png", "learning_curves.png", "conditioning.png")


COMPARE_FILES = ("comparison.md", "comparison.json")


def _check_out(out: Path, names: tuple[str, ...], command: str) -> None:
    """OUT may be new, or hold files of these names only where an earlier `command` wrote them (its JSON, the
    first of `names` with a .json suffix, is there and is its own): a table.md of the user's is never replaced."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    keys = {"report": {"cells", "aggregate"}, "compare": {"labels", "rows", "aggregate"}}[command]
    marker = out / next(n for n in names if n.endswith(".json"))
    present, ours = earlier_output([out / n for n in names], marker, lambda doc: keys <= set(doc))
    if present and not ours:
        raise UsageError(
            f"--out {out} holds {', '.join(p.name for p in present)}, which an earlier {command} did not write; "
            "nothing was replaced: choose another --out"
        )


def _only_datasets(runs: list[Run], skipped: list[Skipped], datasets: list[str]) -> tuple[list[Run], list[Skipped]]:
    """The runs of these dataset labels (a grid part way through: the datasets that have finished), and the
    unfinished runs whose directory names one of them, as a sweep lays runs out (LABEL/BACKBONE/seedN)."""
    found = sorted({r.dataset for r in runs})
    unknown = [d for d in datasets if d not in found]
    if unknown:
        raise UsageError(f"--datasets {' '.join(unknown)}: no finished run has that label (found: {', '.join(found)})")
    wanted = set(datasets)
    return (
        [r for r in runs if r.dataset in wanted],
        [s for s in skipped if wanted & set(Path(s.run_dir).parts)],
    )


def report(
    runs_dir: str | Path,
    out: str | Path | None = None,
    reps: int = DEFAULT_REPS,
    datasets: list[str] | None = None,
    part_references: bool = False,
) -> dict:
    """Tables, figures and stats.json for the finished runs under runs_dir; datasets: only these labels;
    part_references: load the parts of each composed dataset for their reference lines (needs the data)."""
    check_reps(reps)
    runs_dir = Path(runs_dir)
    runs, skipped = _usable_runs(runs_dir)
    if datasets:
        runs, skipped = _only_datasets(runs, skipped, datasets)
    out = Path(out) if out else runs_dir / "report"
    _check_out(out, REPORT_FILES, "report")
    stats = analyse(runs, reps=reps)
    if part_references:  # before anything is written: a part that cannot be loaded leaves no half report
        stats["conditioning"] = with_part_references(stats["conditioning"], runs)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_report(stats, skipped)
    by_target = markdown_targets_table(runs)
    if by_target:
        table += "\nMean normalized score at each target return:\n\n" + by_target
    curves = markdown_curves(stats["curves"])
    if curves:
        table += (
            "\nLearning curves (mean over the seeds that reached every step). A curve is flat over the last third "
            "when every mean from 2/3 of the training steps on lies inside the final evaluation's 95% interval:\n\n"
            + curves
        )
    last_best = markdown_last_best(stats["last_best"])
    if last_best:
        table += "\nLast and best checkpoint (the headline is the last):\n\n" + last_best
    conditioning = markdown_conditioning(stats["conditioning"])
    if conditioning:
        table += "\nReturn conditioning (evaluate --target-sweep), achieved against target return:\n\n" + conditioning
    write_atomic(out / "table.md", table)
    write_csv(out / "table.csv", stats)
    written = {**stats, "conditioning": [c.to_dict() for c in stats["conditioning"]]}
    write_atomic(out / "stats.json", json.dumps({**written, "skipped": [asdict(s) for s in skipped]}, indent=1))
    files = {
        "table_md": str(out / "table.md"),
        "table_csv": str(out / "table.csv"),
        "stats_json": str(out / "stats.json"),
        "scores_png": str(out / "scores.png"),
    }
    plot_scores(out / "scores.png", runs, stats)
    if plot_learning_curves(out / "learning_curves.png", runs):
        files["curves_png"] = str(out / "learning_curves.png")
    if plot_conditioning(out / "conditioning.png", runs, stats["conditioning"]):
        files["conditioning_png"] = str(out / "conditioning.png")
    return {"table": table, "files": files, "runs": len(runs), "skipped": skipped, "stats": stats}


def compare(
    runs_dir_a: str | Path,
    runs_dir_b: str | Path,
    labels=("A", "B"),
    out: str | Path | None = None,
    reps: int = DEFAULT_REPS,
) -> dict:
    """`decision-minrnn compare`: the comparison table of two runs directories, written to OUT/comparison.md and
    OUT/comparison.json when out is given."""
    check_reps(reps)
    if labels[0] == labels[1]:
        raise UsageError(
            f"--labels {labels[0]} {labels[1]}: the two sides need different names (P(A > A) says nothing)"
        )
    (runs_a, skipped_a), (runs_b, skipped_b) = (_usable_runs(Path(d)) for d in (runs_dir_a, runs_dir_b))
    _check_sides(runs_a, runs_b, labels)
    result = compare_runs(runs_a, runs_b, labels=labels, reps=reps)
    if not result["rows"]:
        raise DataError(
            f"{runs_dir_a} and {runs_dir_b} share no dataset x backbone: "
            f"{sorted({(r.dataset, r.backbone) for r in runs_a})} against "
            f"{sorted({(r.dataset, r.backbone) for r in runs_b})}"
        )
    result["skipped"] = [skipped_a, skipped_b]
    table = markdown_comparison(result)
    files = {}
    if out is not None:
        out = Path(out)
        _check_out(out, COMPARE_FILES, "compare")
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "comparison.md", table)
        serial = {**result, "skipped": [[asdict(s) for s in group] for group in result["skipped"]]}
        write_atomic(out / "comparison.json", json.dumps(serial, indent=1))
        files = {"comparison_md": str(out / "comparison.md"), "comparison_json": str(out / "comparison.json")}
    return {**result, "table": table, "files": files}
