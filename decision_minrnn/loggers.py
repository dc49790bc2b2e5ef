"""Where a run's scalars go: TensorBoard, a CSV file, Weights & Biases (`train.loggers`).

* tensorboard (RUN/tb): the training scalars and evaluations, the resolved config as text, and at the end
  the config as hparams with the final scores as metrics, so runs compare by setting in the HParams tab.
* csv (RUN/scalars.csv): one row per (step, tag, value), training scalars and evaluations alike.
* wandb: the same scalars, the config, and the final scores in the run summary. `pip install
  'decision-minrnn[wandb]'`; WANDB_MODE=offline writes the run under RUN/wandb without network
  (`wandb sync` uploads it later).

A resumed run continues each log from its checkpoint's step: TensorBoard purges later events and the CSV
drops later rows, so a crash between a log and a checkpoint leaves no duplicates.
"""

from __future__ import annotations

import csv
import json
import math
import uuid
from pathlib import Path

from .choices import LOGGERS  # noqa: F401  (re-exported)
from .errors import MissingExtraError, install_hint
from .rundir import replaced_atomically, write_atomic


def flatten(d: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}: a nested config as its dotted keys."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def hparam_value(v):
    """TensorBoard's hparams take bool, int, float and str only."""
    if isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v) if v is not None else "none"


class RunLoggers:
    def __init__(self, names, run_dir: Path, config: dict, name: str, start_step: int, wandb_project: str):
        self.names = list(names)
        self.config = config
        self.tb = self.csv_file = self.csv = self.wandb = None
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step if start_step else None)
            import yaml

            self.tb.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", start_step)
        if "csv" in self.names:
            path = run_dir / "scalars.csv"
            kept = []
            if start_step and path.is_file():
                with path.open(newline="") as f:
                    kept = [row for row in csv.reader(f)][1:]
                kept = [row for row in kept if len(row) == 3 and row[0].isdigit() and int(row[0]) <= start_step]
            # Rewritten through a temp file and a rename, so a kill here never loses the rows already logged.
            with replaced_atomically(path) as (tmp,), tmp.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["step", "tag", "value"])
                writer.writerows(kept)
            self.csv_file = path.open("a", newline="")
            self.csv = csv.writer(self.csv_file)
        if "wandb" in self.names:
            try:
                import wandb
            except ImportError:
                raise MissingExtraError(f"train.loggers has wandb: {install_hint('wandb')}") from None
            # One W&B run per run directory, resumed with it (the id is stored beside the checkpoints).
            id_file = run_dir / "wandb_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
            write_atomic(id_file, run_id)
            self.wandb = wandb.init(
                project=wandb_project, name=name, id=run_id, resume="allow", config=config, dir=str(run_dir)
            )

    def scalars(self, values: dict, step: int) -> None:
        values = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        if self.tb is not None:
            for tag, value in values.items():
                self.tb.add_scalar(tag, value, step)
        if self.csv is not None:
            self.csv.writerows([step, tag, repr(value)] for tag, value in values.items())
            self.csv_file.flush()
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def evaluation(self, results: list[dict], step: int) -> None:
        values = {}
        for r in results:
            tag = f"eval/target_{int(r['target_return'])}"
            values[f"{tag}/return_mean"] = r["return_mean"]
            values[f"{tag}/normalized_mean"] = r.get("normalized_mean")
        self.scalars(values, step)

    def finish(self, summary: dict | None) -> None:
        """summary: the final summary (None when the run stopped early): its scores become the hparams metrics."""
        metrics = {}
        for r in (summary or {}).get("eval_all_targets", []):
            key = f"final/target_{int(r['target_return'])}/normalized_mean"
            if r.get("normalized_mean") is not None:
                metrics[key] = r["normalized_mean"]
        if summary is not None and summary.get("final_loss") is not None and math.isfinite(summary["final_loss"]):
            metrics["final/loss"] = summary["final_loss"]
        if self.tb is not None:
            if summary is not None:
                hparams = {k: hparam_value(v) for k, v in flatten(self.config).items()}
                self.tb.add_hparams(hparams, metrics, run_name=".")
            self.tb.close()
        if self.csv_file is not None:
            self.csv_file.close()
        if self.wandb is not None:
            for k, v in metrics.items():
                self.wandb.summary[k] = v
            self.wandb.finish()
