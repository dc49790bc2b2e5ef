"""ONNX export of the recurrent step: same actions as torch over a whole 1000-step episode, same returns as
`evaluate` through the numpy + onnxruntime runner, and one-line refusals."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from helpers import make_minari_dataset, synthetic_episodes  # noqa: E402

import decision_minrnn  # noqa: E402
from decision_minrnn import load_policy  # noqa: E402
from decision_minrnn.cli import main  # noqa: E402
from decision_minrnn.config import load_config  # noqa: E402
from decision_minrnn.evaluation import evaluate_checkpoint  # noqa: E402
from decision_minrnn.onnx_runner import OnnxPolicy, rollout  # noqa: E402
from decision_minrnn.train import train  # noqa: E402

# A sample of the built-in backbones and layouts for the 1000-step and runner tests below; every registered
# recurrent backbone x layout is exported by the shared tester (test_algo_tester.py), so a new backbone needs
# no line here.
# An ONNX export takes seconds each (torch.onnx's exporter): the module is in the slow tier, which CI runs.
pytestmark = pytest.mark.slow

VARIANTS = [
    ("mingru", "interleaved"),
    ("mingru", "fused"),
    ("minlstm", "interleaved"),
    ("minlstm", "fused"),
    ("gru", "interleaved"),
    ("lstm", "fused"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        make_minari_dataset("test/hopper/export-v0", synthetic_episodes(8, seed=1))
        out = {}
        for backbone, layout in VARIANTS + [("transformer", "interleaved")]:
            extra = ["model.conv_kernel=4"] if (backbone, layout) == ("minlstm", "interleaved") else []
            cfg = load_config(
                None,
                [
                    "data.source=[test/hopper/export-v0]",
                    f"model.backbone={backbone}",
                    f"model.token_layout={layout}",
                    "model.embed_dim=32",
                    "model.n_layers=2",
                    "data.context_len=8",
                    "train.steps=20",
                    "train.batch_size=8",
                    "train.warmup_steps=2",
                    "eval.episodes=0",
                    "eval.max_steps=80",
                    "eval.target_returns=[3600]",
                    *extra,
                ],
            )
            run = root / f"{backbone}-{layout}"
            train(cfg, run, progress=False)
            onnx = root / f"{backbone}-{layout}.onnx"
            if backbone != "transformer":
                assert main(["export", "--checkpoint", str(run), "--out", str(onnx)]) == 0
            out[(backbone, layout)] = (run, onnx)
        yield out


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v))
def test_exported_step_matches_torch_over_a_1000_step_episode(exported, variant):
    run, onnx = exported[variant]
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(1000, 2, 11))
    rewards = rng.uniform(0.0, 4.0, size=(1000, 2))
    torch_policy, onnx_policy = load_policy(run), OnnxPolicy(onnx)
    torch_policy.reset(2)
    onnx_policy.reset(2)
    worst = 0.0
    for t in range(1000):
        reward = None if t == 0 else rewards[t - 1]
        a, b = torch_policy.act(obs[t], reward), onnx_policy.act(obs[t], reward)
        worst = max(worst, float(np.abs(a - b).max()))
    assert worst <= 1e-5, worst
    assert np.abs(a).max() > 1e-3  # the policy acts; the comparison is not of zeros


@pytest.mark.parametrize("variant", [("mingru", "interleaved"), ("minlstm", "fused")], ids=lambda v: "-".join(v))
def test_runner_reaches_the_returns_of_evaluate(exported, variant):
    run, onnx = exported[variant]
    reported = evaluate_checkpoint(run, episodes=3, seed=11, device="cpu")["results"][0]
    ran = rollout(OnnxPolicy(onnx), episodes=3, seed=11, target_return=3600.0, max_steps=80)
    np.testing.assert_allclose(ran["returns"], reported["returns"], rtol=1e-5)
    assert ran["normalized_mean"] == pytest.approx(reported["normalized_mean"], rel=1e-5)


def test_runner_needs_no_torch(exported, tmp_path):
    """From the package, and copied on its own with the two numpy-only files it loads from its folder."""
    _, onnx = exported[("mingru", "fused")]
    package = Path(decision_minrnn.__file__).parent
    for name in ("onnx_runner.py", "views.py", "policy_inputs.py"):
        shutil.copy(package / name, tmp_path / name)
    for module, cwd, absent in (
        ("decision_minrnn.onnx_runner", None, "torch"),
        ("onnx_runner", tmp_path, "decision_minrnn"),
    ):
        code = (
            f"import sys, numpy as np; from {module} import OnnxPolicy; "
            f"p = OnnxPolicy({str(onnx)!r}); a = p.act(np.zeros(11)); a = p.act(np.zeros(11), 1.0); "
            f"assert a.shape == (3,); assert 'torch' not in sys.modules and {absent!r} not in sys.modules"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd)


def test_export_writes_what_the_step_needs(exported):
    _, onnx = exported[("minlstm", "interleaved")]
    meta = json.loads(onnx.with_suffix(".json").read_text())
    assert meta["format"] == "decision-minrnn-onnx-step" and meta["env_id"] == "Hopper-v5"
    assert (meta["obs_dim"], meta["act_dim"], meta["rtg_scale"], meta["target_returns"]) == (11, 3, 1000.0, [3600.0])
    assert len(meta["obs_mean"]) == 11 and len(meta["state"]) == 4  # 2 blocks x (h, conv buffer)


def test_bad_exports_are_one_line_errors(exported, tmp_path, capsys):
    run, _ = exported[("transformer", "interleaved")]
    cases = [
        (["--checkpoint", str(run), "--out", str(tmp_path / "t.onnx")], "transformer backbone has no O(1)"),
        (
            ["--checkpoint", str(exported[("mingru", "fused")][0]), "--out", str(tmp_path / "no" / "p.onnx")],
            "does not exist",
        ),
        (
            ["--checkpoint", str(exported[("mingru", "fused")][0]), "--out", str(tmp_path / "p.txt")],
            "must end in .onnx",
        ),
        (["--checkpoint", str(tmp_path), "--out", str(tmp_path / "p.onnx")], "nor a run directory with checkpoints"),
    ]
    for args, message in cases:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not list(tmp_path.glob("*.onnx"))
