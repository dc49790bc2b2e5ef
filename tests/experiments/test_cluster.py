"""Sweeps on a cluster without a shared filesystem: --storage, results that come home, node loss."""

import json
import threading
import time

import pytest
import yaml
from helpers import FAST, make_minari_dataset, synthetic_episodes

from decision_minrnn.experiments.report import report
from decision_minrnn.experiments.storage import RunStorage, write_run_files
from decision_minrnn.experiments.sweep import sweep


def grid_file(tmp_path, seeds=(0, 1), extra=()):
    make_minari_dataset("test/hopper/medium-v0", synthetic_episodes(6))
    config = tmp_path / "hopper-medium.yaml"
    config.write_text(yaml.safe_dump({"data": {"source": "test/hopper/medium-v0"}}))
    grid = tmp_path / "grid.yaml"
    spec = {"name": "g", "datasets": {"hopper-medium": str(config)}, "backbones": ["mingru"], "seeds": list(seeds)}
    grid.write_text(yaml.safe_dump({**spec, "set": FAST + list(extra)}))
    return grid


def test_storage_keeps_only_complete_checkpoints_and_restores_the_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000003").mkdir(parents=True)
    (run / "checkpoints" / "step-00000003" / "model.safetensors").write_bytes(b"weights")
    (run / "config.yaml").write_text("name: x\n")
    (run / "tb").mkdir()
    (run / "tb" / "events.1").write_bytes(b"ev")
    store = RunStorage(str(tmp_path / "store"))
    assert store.latest_step("a/b/seed0") == 0 and store.download("a/b/seed0", tmp_path / "nothing") == 0
    store.upload("a/b/seed0", run, 3)
    # A later upload cut off before latest.json: its files are there, but nothing points at them.
    (tmp_path / "store" / "a/b/seed0/checkpoints/step-00000006").mkdir()
    assert store.latest_step("a/b/seed0") == 3
    back = tmp_path / "back"
    assert store.download("a/b/seed0", back) == 3
    assert (back / "checkpoints" / "step-00000003" / "model.safetensors").read_bytes() == b"weights"
    assert (back / "config.yaml").read_text() == "name: x\n" and (back / "tb" / "events.1").read_bytes() == b"ev"
    assert not (back / "checkpoints" / "step-00000006").exists()


@pytest.mark.parametrize("name", ["../escape", "checkpoints/step-00000001/model.safetensors", "/abs"])
def test_the_driver_writes_only_a_runs_own_files(tmp_path, name):
    with pytest.raises(ValueError, match="outside the run's own files"):
        write_run_files(tmp_path / "run", {name: b"x"})


@pytest.mark.slow
def test_a_sweep_with_storage_brings_every_run_home(tmp_path, minari_root):
    grid = grid_file(tmp_path)
    out = sweep(str(grid), runs_root=str(tmp_path / "driver"), use_ray=False, storage=str(tmp_path / "store"))
    assert out["ran"] == 2 and out["failed"] == 0, out["records"]
    for seed in (0, 1):
        home = tmp_path / "driver" / "g" / "hopper-medium" / "mingru" / f"seed{seed}"
        assert json.loads((home / "final.json").read_text())["finished"]
        assert not (home / "checkpoints").exists()  # the checkpoints stay in storage
        assert (home / "metrics.jsonl").is_file() and any((home / "tb").iterdir())
        assert RunStorage(str(tmp_path / "store")).latest_step(f"hopper-medium/mingru/seed{seed}") == 6
    assert all(r["resumed_from"] == 0 and "files" not in r for r in out["records"])
    assert report(tmp_path / "driver" / "g", tmp_path / "report", reps=200)["runs"] == 2


@pytest.mark.slow
def test_a_two_node_cluster_survives_losing_the_worker_node(tmp_path, minari_root, monkeypatch):
    """A head node that runs no task and a worker node, as separate Ray processes started in different working
    directories, on loopback addresses only. The worker trains in its own scratch space and never writes
    the driver's runs root (checked mid-run). A grid of two runs is submitted with --address; the worker node
    is killed once a run has stored a checkpoint; a new worker node joins; that run resumes from its
    checkpoint there, the other run trains too, and report on the driver lists both."""
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # Loopback only: Ray turns a "127.0.0.1:port" address into the machine's outward IP unless it treats the
    # machine as a single-host setup (the switch it uses on macOS and Windows). Processes it starts read the
    # environment variable; this process has read it already, hence the attribute too.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)

    # Long enough that the kill lands mid-run: 200 steps, a checkpoint every 20.
    steps = ["train.steps=200", "train.checkpoint_every=20", "train.eval_every=0", "train.log_every=20"]
    grid = grid_file(tmp_path, seeds=(0, 1), extra=steps)  # one worker CPU: the two runs train one after another
    store_dir, driver = tmp_path / "store", tmp_path / "driver"
    # A dead node is noticed after 3 missed health checks 0.5 s apart, instead of Ray's default of about 30 s.
    health = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    head = {"num_cpus": 0, "node_ip_address": "127.0.0.1", "_system_config": health}
    # Each node's processes start in a working directory of their own (they inherit this process's at start).
    for name in ("head-cwd", "worker-cwd", "worker2-cwd", "driver-cwd"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "head-cwd")
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        monkeypatch.chdir(tmp_path / "worker-cwd")
        worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        monkeypatch.chdir(tmp_path / "driver-cwd")
        result = {}

        def run_sweep():
            result["out"] = sweep(
                str(grid), runs_root=str(driver), address=cluster.address, storage=str(store_dir), log=lambda *_: None
            )

        thread = threading.Thread(target=run_sweep)
        thread.start()
        store = RunStorage(str(store_dir))
        runs = [f"hopper-medium/mingru/seed{seed}" for seed in (0, 1)]
        deadline = time.time() + 300
        while max(store.latest_step(r) for r in runs) < 20 and time.time() < deadline:
            time.sleep(0.2)
        killed_run, killed_at = max(((r, store.latest_step(r)) for r in runs), key=lambda x: x[1])
        assert 20 <= killed_at < 200, "the run finished (or never checkpointed) before the node could be killed"
        assert not (driver / "g" / "hopper-medium").exists()  # the worker trains elsewhere, never in the driver's root
        cluster.remove_node(worker)  # SIGKILLs the node's raylet and its workers, mid-run
        monkeypatch.chdir(tmp_path / "worker2-cwd")
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        monkeypatch.chdir(tmp_path / "driver-cwd")
        thread.join(timeout=600)
        assert not thread.is_alive()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    out = result["out"]
    assert out["ran"] == 2 and out["failed"] == 0, out["records"]
    records = {f"hopper-medium/mingru/seed{r['seed']}": r for r in out["records"]}
    assert all(r["status"] == "done" for r in records.values()), records
    assert records[killed_run]["resumed_from"] >= killed_at > 0  # not restarted from step 0
    for run in runs:
        home = driver / "g" / run
        final = json.loads((home / "final.json").read_text())
        assert final["finished"] and final["step"] == 200
        losses = [line for line in (home / "scalars.csv").read_text().splitlines() if ",train/loss," in line]
        assert [int(line.split(",")[0]) for line in losses] == list(range(20, 201, 20))  # the killed one: both nodes
    assert report(driver / "g", tmp_path / "report", reps=200)["runs"] == 2


def test_without_storage_a_run_trained_on_another_disk_still_comes_home(tmp_path, minari_root):
    """No shared filesystem and no --storage: the worker writes RUNS_ROOT/... on its own disk. The same path on
    the driver's disk is simulated by a second directory; the record's files land there."""
    from decision_minrnn.experiments.grid import load_grid
    from decision_minrnn.experiments.sweep import _bring_home, run_one

    (spec,) = load_grid(grid_file(tmp_path, seeds=(0,))).runs
    record = run_one(spec, str(tmp_path / "worker-disk" / "run"), threads=1)
    assert record["status"] == "done" and "config.yaml" in record["files"]
    record["run_dir"] = str(tmp_path / "driver-disk" / "run")
    _bring_home(record)
    home = tmp_path / "driver-disk" / "run"
    assert json.loads((home / "final.json").read_text())["finished"] and "files" not in record
    assert (home / "metrics.jsonl").read_bytes() == (tmp_path / "worker-disk" / "run" / "metrics.jsonl").read_bytes()
    # On one machine the driver already sees final.json: nothing is written twice.
    again = run_one(spec, str(home), threads=1)
    assert "files_home" not in _bring_home(again)


@pytest.mark.slow
def test_asking_for_a_gpu_the_cluster_lacks_is_one_line_not_a_hang(tmp_path, minari_root, capsys):
    pytest.importorskip("ray")
    import torch

    from decision_minrnn.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    grid = grid_file(tmp_path, seeds=(0,))
    code = main(["sweep", "--grid", str(grid), "--runs-root", str(tmp_path / "runs"), "--gpus-per-run", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == "error: --gpus-per-run 0.5, but the Ray cluster has 0 GPUs"
    assert not (tmp_path / "runs" / "g" / "hopper-medium").exists()
