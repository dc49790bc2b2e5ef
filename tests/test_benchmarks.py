"""The benchmark functions run and report ratios (tiny sizes: this checks the plumbing, not the speed)."""

import pytest

from decision_minrnn.benchmarks import bench_inference, bench_sampler, bench_scan, bench_train_step


@pytest.mark.slow
def test_bench_scan_reports_every_variant():
    out = bench_scan(lengths=(8,), batch=2, dim=4, repeats=1)
    row = out["results"][0]
    for name in (
        "nn_gru",
        "mingru_sequential",
        "mingru_chunked",
        "mingru_log",
        "mingru_step_loop",
        "minlstm_sequential",
        "mingru_compiled",
        "mingru_projection",
        "minlstm_compiled",
    ):
        assert row["ms"][name] > 0
    for ratio in (
        "mingru_auto_vs_step_loop_speedup",
        "mingru_compiled_vs_step_loop_sliced_speedup",
        "minlstm_step_loop_vs_projection_ceiling",
    ):
        assert row["ratios"][ratio] > 0
    assert set(row["first_compiled_call_s"]) == {"mingru", "minlstm"}


@pytest.mark.slow
@pytest.mark.parametrize("native", [True, False])
def test_bench_train_step_and_inference_report_ratios(monkeypatch, native):
    # bf16 variants are timed by default exactly where the CPU has native bf16 (mocked both ways).
    monkeypatch.setattr("decision_minrnn.device.cpu_has_native_bf16", lambda: native)
    # (torch.nn.LSTM has no bf16 kernel on a CPU without native bf16, so the mocked case leaves gru / lstm out.)
    backbones = ["mingru", "minlstm", "transformer"] + ([] if native else ["gru", "lstm"])
    train = bench_train_step(backbones, contexts=(4,), batch_for_context={4: 2}, repeats=1, embed_dim=8, n_layers=1)
    assert len(train["results"]) == 2  # two token layouts
    assert train["native_bf16"] is native and train["bf16_timed"] is native
    expected = {*backbones, "mingru_compiled", "minlstm_compiled", *(f"{n}_fast_dropout" for n in backbones)}
    if native:
        expected |= {f"{n}_bf16" for n in backbones} | {f"{n}_bf16_fast_dropout" for n in backbones}
    assert set(train["results"][0]["speedup_vs_transformer"]) == expected - {"transformer"}
    infer = bench_inference(contexts=(4,), n_envs=(1, 2), steps=3, repeats=1, embed_dim=8, n_layers=1)
    assert [(r["n_envs"], r["threads"]) for r in infer["results"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert infer["results"][0]["recurrent_speedup"]["window_K4"] > 0


@pytest.mark.slow
def test_bench_train_step_times_bf16_and_whole_model_compile_variants():
    """The variants a GPU run of the suite adds by default (asked for here on CPU): bf16 autocast and
    torch.compile of the whole model, each a separate timing beside the eager float32 step."""
    train = bench_train_step(
        backbones=("mingru", "transformer"),
        contexts=(4,),
        layouts=("fused",),
        batch_for_context={4: 2},
        repeats=1,
        embed_dim=8,
        n_layers=1,
        compiled_gates=False,
        bf16=True,
        train_compile=True,
        fast_dropout=False,
    )
    (row,) = train["results"]
    names = ["mingru", "transformer"]
    assert set(row["ms"]) == {*names, *(f"{n}_bf16" for n in names), *(f"{n}_train_compile" for n in names)}
    assert all(v > 0 for v in row["ms"].values())
    assert "peak_mb" not in row  # CUDA only


def test_profile_train_step_names_the_ops_of_each_backbone():
    from decision_minrnn.benchmarks import profile_train_step

    kwargs = dict(backbones=("mingru", "transformer"), K=4, batch=2, steps=2, embed_dim=8, n_layers=1)
    top5, every = profile_train_step(top=5, **kwargs), profile_train_step(top=10_000, **kwargs)
    assert [r["backbone"] for r in top5["results"]] == ["mingru", "transformer"]
    for row in top5["results"]:
        assert len(row["ops"]) == 5 and row["ms_per_step"] > 0
    for row in every["results"]:
        names = [op["op"] for op in row["ops"]]
        assert len(set(names)) == len(names) > 5 and all(isinstance(n, str) and n for n in names)
        shares = [op["percent"] for op in row["ops"]]
        # every op together is all the time, up to each share's rounding to 0.1
        assert shares == sorted(shares, reverse=True) and abs(sum(shares) - 100) <= 0.05 * len(shares) + 0.1
    # The scan's autograd functions show up by name: the profile sees inside the minGRU step. (Which ops make
    # the top five of a model this small depends on the machine's load, so the names are read from all of them.)
    mingru_ops = {op["op"] for op in every["results"][0]["ops"]}
    assert any("SequentialScan" in op for op in mingru_ops) and "aten::mm" in mingru_ops


@pytest.mark.slow
def test_bench_profile_cli_prints_the_breakdown(capsys):
    from decision_minrnn.cli import main

    assert main(["bench", "--profile", "--quick", "--layout", "fused", "--dropout-impl", "fast"]) == 0
    out = capsys.readouterr().out
    assert "dropout_impl=fast" in out and "fused" in out
    for backbone in ("mingru", "minlstm", "transformer"):
        assert f"  {backbone}: " in out


def test_bench_sampler(tiny_minari):
    out = bench_sampler(tiny_minari[0], contexts=(5,), batch=4, repeats=2)
    assert out["results"][0]["ms_per_batch"] > 0 and out["results"][-1]["mode"] == "episode"


@pytest.mark.slow
def test_bench_policy_latency_reports_every_path():
    from decision_minrnn.benchmarks import bench_policy_latency

    out = bench_policy_latency(n_envs=(1, 2), steps=3, repeats=1, embed_dim=8, n_layers=1, window_K=4, compiled=False)
    assert [r["n_envs"] for r in out["results"]] == [1, 2]
    row = out["results"][0]
    assert set(row["ms_per_step"]) == {
        "torch_model_act",
        "torch_recurrent",
        "torch_window_K20",
        "onnxruntime_recurrent",
        "mujoco_step",
    }
    assert set(row["speedup_vs_torch_recurrent"]) == set(row["ms_per_step"]) - {"torch_recurrent", "mujoco_step"}
    assert set(row["model_over_mujoco"]) == set(row["ms_per_step"]) - {"mujoco_step"}
    assert row["ms_per_step"]["mujoco_step"] > 0


def test_bench_seed_group_times_both_paths_on_the_same_models():
    from decision_minrnn.benchmarks import bench_seed_group

    out = bench_seed_group(n_seeds=2, backbones=("mingru", "transformer"), layouts=("fused",), K=4, batch=2, repeats=1)
    assert [(r["backbone"], r["layout"], r["seeds"]) for r in out["results"]] == [
        ("mingru", "fused", 2),
        ("transformer", "fused", 2),
    ]
    for row in out["results"]:
        assert set(row["ms"]) == {"sequential", "group"}
        assert (
            row["speedup"] == round(row["ms"]["sequential"] / row["ms"]["group"], 2)
            or abs(row["speedup"] - row["ms"]["sequential"] / row["ms"]["group"]) < 0.05
        )


@pytest.mark.slow
def test_the_context_cost_script_reports_training_memory_and_acting_per_backbone():
    """scripts/bench_context.py at toy sizes: every backbone x layout has a time, a per-timestep time and a peak
    memory (the peer DT in the interleaved layout only), and acting has every path beside MuJoCo's step."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_context.py"
    # one K, one layout (the one with the peer; the A/B test below has both layouts' training rows): each memory
    # cell is two fresh processes (the default allocator's peak, the fixed-threshold one)
    args = ["--contexts", "4", "--timesteps", "16", "--repeats", "1", "--envs", "2", "--act-steps", "2"]
    args += ["--memory-repeats", "1", "--layouts", "interleaved"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert [(r["K"], r["layout"]) for r in out["train"]] == [(4, "interleaved")]
    for row in out["train"]:
        names = {"mingru", "minlstm", "transformer", "peer_dt"}
        assert set(row["ms_per_1000_timesteps"]) == set(row["peak_mb"]) == names
        assert row["batch"] * row["K"] == row["real_timesteps"] and row["vs_transformer"]["transformer"] == 1.0
        assert set(row["alloc_peak_mb"]) == set(row["peak_range_mb"]) == names
        for name in names:
            assert isinstance(row["peak_mb"][name], float) and row["peak_mb"][name] > 0
            assert isinstance(row["alloc_peak_mb"][name], float) and row["alloc_peak_mb"][name] > 0
            assert row["peak_range_mb"][name] == [row["peak_mb"][name]] * 2  # one process: its own range
    paths = {"mingru_recurrent", "minlstm_recurrent", "transformer_window_kv_cache", "transformer_window_rerun"}
    assert [r["K"] for r in out["act"]] == [4]
    assert all(set(r["vs_mujoco"]) == paths and r["mujoco_ms_per_env_step"] > 0 for r in out["act"])


@pytest.mark.slow
def test_the_context_cost_script_acts_alone_in_each_token_layout():
    """--act-only skips training and memory; --act-layouts gives one acting row per (layout, K), the package's
    default interleaved layout included (its KV cache prefilled without the last step's action token)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_context.py"
    args = ["--contexts", "4", "8", "--repeats", "1", "--envs", "2", "--act-steps", "2", "--act-only"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--act-layouts", "fused", "interleaved"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(done.stdout)
    assert "train" not in out
    assert [(r["layout"], r["K"]) for r in out["act"]] == [
        ("fused", 4),
        ("fused", 8),
        ("interleaved", 4),
        ("interleaved", 8),
    ]
    assert all(v > 0 for r in out["act"] for v in r["ms_per_env_step"].values())


@pytest.mark.slow
def test_the_context_ab_script_times_two_checkouts_alternately():
    """scripts/bench_context_ab.py: one JSON line per checkout and round, each from its own package."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    args = [str(root / "scripts" / "bench_context_ab.py"), str(root), str(root), "--contexts", "4", "--rounds", "1"]
    args += ["--timesteps", "16", "--repeats", "1"]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [line["root"] for line in lines] == [str(root), str(root)]
    for line in lines:
        assert [(r["K"], r["layout"]) for r in line["train"]] == [(4, "interleaved"), (4, "fused")]
        assert set(line["ms_per_step_4_sequences"]) == {
            f"{n}_{layout}_b4_K4" for n in ("mingru", "minlstm") for layout in ("fused", "interleaved")
        }


def _memory_savers_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_memory_savers.py"
    spec = importlib.util.spec_from_file_location("bench_memory_savers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def test_the_memory_savers_variants_swap_what_they_name():
    """Each variant of scripts/bench_memory_savers.py keeps what it claims for the backward at a short (K = 20)
    sequence: float or bool dropout masks, one or two hidden tensors in the MLP; the package's rules come back
    after."""
    import torch

    from decision_minrnn.nn import dropout as dropout_module
    from decision_minrnn.nn import mlp as mlp_module
    from decision_minrnn.nn.mlp import GeluMLP
    from decision_minrnn.nn.scan import LONG_SEQUENCE

    bench, _ = _memory_savers_script()
    mlp = GeluMLP(8, 32).train()
    x = torch.randn(2, 20, 8, requires_grad=True)

    def kept(variant):
        bench.use(variant)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            mlp(x)
            dropout_module.dropout(x, 0.1, True)
        hidden = {t.data_ptr() for t in saved if t.dim() and t.shape[-1] == 32 and t.numel() == 2 * 20 * 32}
        masks = {t.dtype for t in saved if t.shape == x.shape and not t.requires_grad and t.data_ptr() != x.data_ptr()}
        return len(hidden), masks

    try:
        assert kept("plain") == (2, {torch.float32})
        assert kept("masks") == (2, {torch.bool})
        assert kept("recompute") == (1, {torch.float32})
        assert kept("package") == (2, {torch.float32})  # K = 20: below both savers' length
    finally:
        bench.use("package")
    assert dropout_module.LONG_SEQUENCE == mlp_module.LONG_SEQUENCE == LONG_SEQUENCE


@pytest.mark.slow
def test_the_memory_savers_script_reports_every_variant_against_the_plain_step():
    import json
    import subprocess
    import sys

    _, path = _memory_savers_script()
    args = ["--repeats", "1", "--settings", "4:interleaved:2", "4:fused:2"]
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert [(r["K"], r["layout"], r["batch"]) for r in out["rows"]] == [(4, "interleaved", 2), (4, "fused", 2)]
    for row in out["rows"]:
        assert set(row["vs_plain"]) == {"plain", "masks", "recompute", "package"}
        assert row["vs_plain"]["plain"] == 1.0 and row["plain_ms"] > 0
    bad = subprocess.run([sys.executable, str(path), "--settings", "4:sideways:2"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
