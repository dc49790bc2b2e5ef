"""Issue 35's study (configs/grids/memory.yaml): the K=20 minRNN arm scored in window mode, and the tables.

    python scripts/memory_study.py measure ~/grid-runs/memory     # needs the checkpoints; RUN/window_score.json
    python scripts/memory_study.py stamp docs/memory/runs     # on the machine that trained them: RUN/machine.json
    python scripts/memory_study.py report docs/memory/runs --grid configs/grids/memory.yaml --out docs/memory/report

`measure`: a minRNN trained on 20-step windows is evaluated recurrently from t=0 (its state has then seen more
than 20 steps: a distribution shift) in the grid's headline; here its last checkpoint is also scored the way it
was trained, re-running the last 20 steps from a zero state at every step (window mode), on the same test
episodes (final.json's eval_protocol). The result goes beside final.json as window_score.json.

`stamp`: the grid moves between machines (sessions do), and wall seconds only compare within one, so each
harvested run gets a machine.json naming the CPU it trained on (a run cut off on one machine restarts from
scratch on the next: its checkpoints stay behind). Run it where the runs trained, before committing them;
`--machine JSON` records a described machine instead (for runs harvested before machine.json existed).

`report`: per task x view, each arm's mean and IQM over seeds with 95% stratified-bootstrap intervals (none from
one seed), P(arm > transformer-k20) with its interval, the arm's real timesteps and wall seconds (and the wall
ratio to transformer-k20: the median over seeds of the same seed's ratio, where both ran on one machine), and
whether its curve had plateaued (analysis.curve_stats: every mean of the last third of training inside the final
interval); per view,
P(arm > transformer-k20) over both tasks (stratified); the issue's hypothesis read per view and whole-episode
minRNN arm (it holds where the arm's P interval lies above 0.5 on every task and its wall ratio is at most
1.5x), and, given the grid file (--grid), how many of its runs have finished and whether each verdict rests on
every planned seed; and a figure of score against context, a panel per task x view. Needs only the committed
small files (and the grid file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from decision_minrnn.errors import UsageError, guarded
from decision_minrnn.evaluation import evaluate_checkpoint
from decision_minrnn.experiments.analysis import curve_stats
from decision_minrnn.experiments.collect import Run, collect_runs, measure_runs, read_side_file
from decision_minrnn.experiments.report import check_reps
from decision_minrnn.experiments.stats import DEFAULT_REPS, probability_of_improvement, score_stats
from decision_minrnn.rundir import write_atomic

WINDOW_FILE = "window_score.json"
MACHINE_FILE = "machine.json"
WINDOW_ARMS = ("mingru-k20",)  # the K=20 arms that can also act recurrently: scored both ways
BASELINE = "transformer-k20"
VIEWS = ("velocities", "flicker", "full", "positions")
# Issue 35's hypothesis: these arms beat BASELINE with P intervals above 0.5 on every task, within this wall ratio.
HYPOTHESIS_ARMS = ("mingru-episodes", "minlstm-episodes")
HYPOTHESIS_WALL = 1.5
# The arms in table order; "mingru-k20-window" is mingru-k20's last checkpoint scored in window mode.
ARMS = (
    "transformer-k20",
    "mingru-k20",
    "mingru-k20-window",
    "mingru-episodes",
    "minlstm-episodes",
    "transformer-episodes",
)


def arm_of(run: Run) -> str:
    """The arm: the middle component of a grid run's directory (<dataset label>/<arm>/seed<N>)."""
    return Path(run.run_dir).parent.name


def measure_window(run: Run) -> dict:
    """The last checkpoint in window mode on the headline's test episodes."""
    if run.test_episodes is None or run.test_seed is None:
        raise UsageError(f"{run.run_dir}: final.json has no eval_protocol (a run without eval.final_episodes)")
    out = evaluate_checkpoint(run.run_dir, episodes=run.test_episodes, seed=run.test_seed, mode="window", device="cpu")
    if out["step"] != run.steps:  # the newest checkpoint must be the one final.json scored
        raise UsageError(f"{run.run_dir}: newest checkpoint is step {out['step']}, final.json's is {run.steps}")
    first = out["results"][0]
    return {
        "mode": "window",
        "step": out["step"],
        "episodes": run.test_episodes,
        "seed": run.test_seed,
        "target_return": first["target_return"],
        "normalized_mean": first["normalized_mean"],
        "normalized": first["normalized"],
        "all_targets": [
            {"target_return": r["target_return"], "normalized_mean": r["normalized_mean"]} for r in out["results"]
        ],
    }


def measure(runs_dir: Path, force: bool) -> dict:
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} is not a directory")
    runs, _ = collect_runs(runs_dir)
    return measure_runs([r for r in runs if arm_of(r) in WINDOW_ARMS], WINDOW_FILE, measure_window, force)


def this_machine() -> dict:
    from decision_minrnn.benchmarks import machine_info

    info = machine_info()
    return {k: info[k] for k in ("cpu", "cpu_count", "cpu_native_bf16")}


def stamp(runs_dir: Path, machine: dict | None) -> dict:
    """Write RUN/machine.json for each finished run that has none: this machine, or the one described."""
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} is not a directory")
    if machine is not None and not (isinstance(machine, dict) and isinstance(machine.get("cpu"), str)):
        raise UsageError('--machine must be a JSON object with a "cpu" string, e.g. {"cpu": "AMD EPYC"}')
    record = machine if machine is not None else {**this_machine(), "stamped": "on the machine that trained it"}
    runs, _ = collect_runs(runs_dir)
    stamped = []
    for run in runs:
        path = Path(run.run_dir) / MACHINE_FILE
        if not path.is_file():
            write_atomic(path, json.dumps(record, indent=1) + "\n")
            stamped.append(str(run.run_dir))
    return {"machine": record, "stamped": stamped}


def machine_of(run_dir: str) -> str | None:
    """The machine a run trained on, as one comparable string; None where the run records none."""
    if not (Path(run_dir) / MACHINE_FILE).is_file():
        return None
    remedy = "remove it and run scripts/memory_study.py stamp where the run trained (or --machine)"
    m = read_side_file(run_dir, MACHINE_FILE, remedy)
    if not isinstance(m.get("cpu"), str):
        raise UsageError(f"{Path(run_dir) / MACHINE_FILE} names no cpu; {remedy}")
    return f"{m['cpu']} / {m.get('cpu_count')} cores / native bf16 {m.get('cpu_native_bf16')}"


def split_label(label: str) -> tuple[str, str]:
    """'hopper-medium-velocities' -> ('hopper-medium', 'velocities')."""
    task, _, view = label.rpartition("-")
    if view not in VIEWS:
        raise UsageError(f"dataset label {label!r} does not end in a view ({', '.join(VIEWS)})")
    return task, view


def _cells(runs: list[Run]) -> dict[tuple[str, str, str], dict[int, dict]]:
    """(task, view, arm) -> seed -> {score, timesteps, wall, machine}; the window-mode scores as their own arm."""
    cells: dict = {}
    for run in runs:
        task, view = split_label(run.dataset)
        final = json.loads((Path(run.run_dir) / "final.json").read_text())
        record = {
            "score": run.normalized,
            "timesteps": final.get("timesteps"),
            "wall": final.get("wall_seconds"),
            "machine": machine_of(run.run_dir),
        }
        cells.setdefault((task, view, arm_of(run)), {})[run.seed] = record
        window = Path(run.run_dir) / WINDOW_FILE
        if window.is_file():
            scored = read_side_file(run.run_dir, WINDOW_FILE)
            if scored.get("step") != run.steps or scored.get("seed") != run.test_seed:
                raise UsageError(f"{window} scored another checkpoint or episodes than final.json; measure it again")
            cells.setdefault((task, view, f"{arm_of(run)}-window"), {})[run.seed] = {
                "score": float(scored["normalized_mean"]),
                "timesteps": None,
                "wall": None,
                "machine": None,
            }
    return cells


def _interval(stats, what):
    return None if stats.n < 2 else list(getattr(stats, f"{what}_ci"))


def planned_runs(grid_file: Path) -> dict[tuple[str, str, str], int]:
    """(task, view, arm) -> the number of seeds the grid file plans for it."""
    from decision_minrnn.experiments.grid import load_grid

    planned: dict = {}
    for spec in load_grid(grid_file).runs:
        key = (*split_label(spec.dataset), spec.backbone)
        planned[key] = planned.get(key, 0) + 1
    return planned


def hypothesis(rows: list[dict], planned: dict | None) -> list[dict]:
    """Per view and HYPOTHESIS_ARMS arm with a row on every task of the view: each task's P interval and wall
    ratio, whether the hypothesis holds on what has finished, and (given the grid's plan) whether every planned
    seed is in."""
    verdicts = []
    n_of = {(r["task"], r["view"], r["arm"]): r["n"] for r in rows}
    for view in VIEWS:
        tasks = sorted({r["task"] for r in rows if r["view"] == view})
        for arm in HYPOTHESIS_ARMS:
            cell = {r["task"]: r for r in rows if r["view"] == view and r["arm"] == arm}
            if len(tasks) < 2 or set(cell) != set(tasks) or any("p_ci" not in r for r in cell.values()):
                continue
            per_task = {
                t: {
                    "n": r["n"],
                    "p": r["p_vs_baseline"],
                    "p_ci": r["p_ci"],
                    "wall_vs_baseline": r.get("wall_vs_baseline"),
                }
                for t, r in cell.items()
            }
            above = all(v["p_ci"][0] > 0.5 for v in per_task.values())
            walls = [v["wall_vs_baseline"] for v in per_task.values()]
            cheap = all(w is not None and w <= HYPOTHESIS_WALL for w in walls)
            verdict = {"view": view, "arm": arm, "tasks": per_task, "p_above_half": above, "wall_within": cheap}
            verdict["holds"] = above and cheap
            if planned is not None:
                every_task = {t for t, v, _ in planned if v == view} <= set(tasks)
                verdict["complete"] = every_task and all(
                    n_of.get((t, view, a), 0) >= planned.get((t, view, a), 0) for t in tasks for a in (arm, BASELINE)
                )
            verdicts.append(verdict)
    return verdicts


def report(runs_dir: Path, out: Path | None, grid_file: Path | None = None, reps: int = DEFAULT_REPS) -> dict:
    check_reps(reps)  # the report command's own check and message
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} is not a directory")
    planned = None if grid_file is None else planned_runs(grid_file)
    runs, skipped = collect_runs(runs_dir)
    if not runs:
        raise UsageError(f"no finished runs under {runs_dir}")
    cells = _cells(runs)
    plateaus = {(r["dataset"], r["backbone"]): r["plateau"] for r in curve_stats(runs, reps)}
    first_target = {run.dataset: run.target_return for run in runs}
    rows = []
    for task, view in sorted({(t, v) for t, v, _ in cells}, key=lambda tv: (tv[0], VIEWS.index(tv[1]))):
        base = cells.get((task, view, BASELINE), {})
        for arm in ARMS:
            seeds = cells.get((task, view, arm))
            if not seeds:
                continue
            scores = np.array([seeds[s]["score"] for s in sorted(seeds)])
            stats = score_stats(scores, reps)
            row = {
                "task": task,
                "view": view,
                "arm": arm,
                "n": stats.n,
                "mean": stats.mean,
                "mean_ci": _interval(stats, "mean"),
                "iqm": stats.iqm,
                "iqm_ci": _interval(stats, "iqm"),
                "plateau": plateaus.get((f"{task}-{view}", arm.removesuffix("-window"))),
            }
            walls = [r["wall"] for r in seeds.values() if r["wall"]]
            if walls:
                row["wall_seconds"] = float(np.mean(walls))
                # seed by seed and machine by machine: the grid moves between machines (their speeds differ) and
                # a seed's arms mostly run one after another, so same-seed, same-machine ratios compare like
                # with like (runs without machine.json, from before it existed, count as one machine)
                ratios = [
                    r["wall"] / base[s]["wall"]
                    for s, r in seeds.items()
                    if r["wall"] and base.get(s, {}).get("wall") and base[s]["machine"] == r["machine"]
                ]
                row["wall_vs_baseline"] = float(np.median(ratios)) if ratios else None
                row["wall_pairs"] = len(ratios)
                row["machines"] = len({r["machine"] for r in seeds.values()})
                row["timesteps"] = float(np.mean([r["timesteps"] for r in seeds.values()]))
            if arm != BASELINE and len(seeds) > 1 and len(base) > 1:
                p, ci = probability_of_improvement(
                    scores[:, None], np.array([r["score"] for r in base.values()])[:, None], reps
                )
                row["p_vs_baseline"], row["p_ci"] = p, list(ci)
            rows.append(row)
    pooled = []
    for view in VIEWS:
        for arm in ARMS:
            if arm == BASELINE:
                continue
            tasks = sorted({t for t, v, a in cells if v == view and a == arm and (t, v, BASELINE) in cells})
            seeds = [set(cells[(t, view, arm)]) & set(cells[(t, view, BASELINE)]) for t in tasks]
            common = sorted(set.intersection(*seeds)) if seeds else []
            if len(tasks) < 2 or len(common) < 2:
                continue
            x = np.array([[cells[(t, view, arm)][s]["score"] for t in tasks] for s in common])
            y = np.array([[cells[(t, view, BASELINE)][s]["score"] for t in tasks] for s in common])
            p, ci = probability_of_improvement(x, y, reps)
            pooled.append(
                {"view": view, "arm": arm, "tasks": tasks, "n": len(common), "p_vs_baseline": p, "p_ci": list(ci)}
            )
    if planned is not None:
        keys = [(*split_label(r.dataset), arm_of(r)) for r in runs]
        progress = {"finished": sum(k in planned for k in keys), "planned": sum(planned.values())}
        progress["cells_not_started"] = len(set(planned) - set(keys))
    result = {
        "baseline": BASELINE,
        "headline_targets": first_target,
        "rows": rows,
        "pooled": pooled,
        "hypothesis": hypothesis(rows, planned),
        "skipped": [{"run_dir": s.run_dir, "reason": s.reason} for s in skipped],
    }
    if planned is not None:
        result["progress"] = progress
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "report.json", json.dumps(result, indent=1) + "\n")
        write_atomic(out / "report.md", markdown(result))
        behaviour = {split_label(r.dataset)[0]: r.behaviour for r in runs if r.behaviour is not None}
        figure(out / "memory.png", rows, behaviour)
    return result


def _fmt(value, ci) -> str:
    return f"{value:.1f}" + ("" if ci is None else f" [{ci[0]:.1f}, {ci[1]:.1f}]")


def markdown(result: dict) -> str:
    lines = [
        "| task | view | arm | n | mean [95% CI] | IQM [95% CI] | P(arm > transformer-k20) "
        "| wall s (median x baseline, same seed and machine) | plateau |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        p = "" if "p_vs_baseline" not in r else f"{r['p_vs_baseline']:.2f} [{r['p_ci'][0]:.2f}, {r['p_ci'][1]:.2f}]"
        wall = "" if "wall_seconds" not in r else f"{r['wall_seconds']:.0f}"
        if r.get("machines", 1) > 1:  # the mean mixes machines; the ratio does not
            wall += f" on {r['machines']} machines"
        if r.get("wall_vs_baseline"):
            pairs = "" if r["wall_pairs"] == r["n"] else f", {r['wall_pairs']} seeds"
            wall += f" ({r['wall_vs_baseline']:.2f}x{pairs})"
        flat = {True: "yes", False: "no", None: "-"}[r["plateau"]]
        lines.append(
            f"| {r['task']} | {r['view']} | {r['arm']} | {r['n']} | {_fmt(r['mean'], r['mean_ci'])} | "
            f"{_fmt(r['iqm'], r['iqm_ci'])} | {p} | {wall} | {flat} |"
        )
    if result["pooled"]:
        lines += ["", "| view | arm | tasks | n | P(arm > transformer-k20), both tasks |", "|---|---|---|---|---|"]
        for r in result["pooled"]:
            ci = r["p_ci"]
            lines.append(
                f"| {r['view']} | {r['arm']} | {', '.join(r['tasks'])} | {r['n']} | "
                f"{r['p_vs_baseline']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] |"
            )
    if result["hypothesis"]:
        lines += [
            "",
            f"Hypothesis (issue 35): the arm beats {BASELINE} with P intervals above 0.5 on every task, within "
            f"{HYPOTHESIS_WALL}x its wall time.",
            "",
            "| view | arm | P(arm > transformer-k20) per task (n) | wall x baseline | P above 0.5 | wall within "
            "| holds | every planned seed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        yes = {True: "yes", False: "no", None: "-"}
        for h in result["hypothesis"]:
            ps = "; ".join(
                f"{t} {v['p']:.2f} [{v['p_ci'][0]:.2f}, {v['p_ci'][1]:.2f}] ({v['n']})" for t, v in h["tasks"].items()
            )
            walls = ", ".join(
                "-" if v["wall_vs_baseline"] is None else f"{v['wall_vs_baseline']:.2f}x" for v in h["tasks"].values()
            )
            lines.append(
                f"| {h['view']} | {h['arm']} | {ps} | {walls} | {yes[h['p_above_half']]} | {yes[h['wall_within']]} "
                f"| {yes[h['holds']]} | {yes[h.get('complete')]} |"
            )
    if "progress" in result:
        pr = result["progress"]
        lines += ["", f"Finished: {pr['finished']} of the grid's {pr['planned']} runs."]
    return "\n".join(lines) + "\n"


def _yerr(row: dict) -> tuple[float, float]:
    """A row's (below, above) error bar: its mean's interval, none from one seed."""
    low, high = row["mean_ci"] or (row["mean"], row["mean"])
    return row["mean"] - low, high - row["mean"]


def figure(path: Path, rows: list[dict], behaviour: dict[str, float] | None = None) -> None:
    """Score against context, a panel per task x view (one y scale per task, so the views compare): each
    backbone at K=20 and on whole episodes, side by side, and the behaviour policy's level (dashed) where the
    runs record it (behaviour: task -> normalized score)."""
    from decision_minrnn.experiments.plots import color, pyplot

    plt = pyplot()
    tasks = sorted({r["task"] for r in rows})
    views = [v for v in VIEWS if any(r["view"] == v for r in rows)]
    fig, axes = plt.subplots(
        len(tasks), len(views), figsize=(3.6 * len(views), 3.2 * len(tasks)), squeeze=False, sharey="row"
    )
    dodge = {"transformer": -0.1, "mingru": 0.0, "minlstm": 0.1}  # apart, so that equal scores stay visible
    for i, task in enumerate(tasks):
        for j, view in enumerate(views):
            ax = axes[i][j]
            by_arm = {r["arm"]: r for r in rows if r["task"] == task and r["view"] == view}
            for backbone, shift in dodge.items():
                points = [(x + shift, by_arm.get(f"{backbone}-{k}")) for x, k in ((0, "k20"), (1, "episodes"))]
                points = [(x, r) for x, r in points if r is not None]
                if not points:
                    continue
                xs, ys = [x for x, _ in points], [r["mean"] for _, r in points]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=np.array([_yerr(r) for _, r in points]).T,
                    marker="o",
                    capsize=3,
                    color=color(backbone),
                    label=backbone,
                )
            if "mingru-k20-window" in by_arm:
                r = by_arm["mingru-k20-window"]
                ax.errorbar(
                    [0.2],
                    [r["mean"]],
                    yerr=np.array([_yerr(r)]).T,
                    marker="x",
                    capsize=3,
                    color=color("mingru"),
                    linestyle="",
                    label="mingru K=20, window",
                )
            if behaviour and task in behaviour:
                ax.axhline(behaviour[task], color="grey", linestyle="--", linewidth=1, label="behaviour policy")
            ax.set_xticks([0, 1], ["K=20", "whole episode"])
            ax.set_xlim(-0.4, 1.4)
            ax.set_title(f"{task}, {view}", fontsize=9)
            if j == 0:
                ax.set_ylabel("normalized score (last checkpoint)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help=f"write RUN/{WINDOW_FILE} for the K=20 minRNN runs with a checkpoint")
    m.add_argument("runs")
    m.add_argument("--force", action="store_true", help="evaluate runs that already have the file again")
    r = sub.add_parser("report", help="the tables and the figure from the runs' small files")
    r.add_argument("runs")
    r.add_argument("--out", default=None, help="write report.md, report.json and memory.png here")
    r.add_argument("--reps", type=int, default=DEFAULT_REPS, help="bootstrap resamples per interval")
    r.add_argument("--grid", default=None, help="the grid file (configs/grids/memory.yaml): progress and completeness")
    s = sub.add_parser("stamp", help=f"write RUN/{MACHINE_FILE} (the CPU it trained on) for runs that have none")
    s.add_argument("runs")
    s.add_argument("--machine", default=None, help='record this JSON instead of this machine: {"cpu": ..., ...}')
    args = parser.parse_args()
    if args.command == "measure":
        out = measure(Path(args.runs), args.force)
    elif args.command == "stamp":
        try:
            machine = None if args.machine is None else json.loads(args.machine)
        except json.JSONDecodeError as e:
            raise UsageError(f"--machine is not JSON: {e}") from None
        out = stamp(Path(args.runs), machine)
    else:
        grid = None if args.grid is None else Path(args.grid)
        out = report(Path(args.runs), None if args.out is None else Path(args.out), grid, args.reps)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(guarded(main))  # the CLI's contract: one line and exit code 2 on bad input
