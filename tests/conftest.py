import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
# A Minari id that is not local makes minari ask the Hugging Face hub, which retries for about 23 s without
# network. The tests never download: fail at once instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per xdist worker: two workers with two threads each on two cores spend their time in
    # OpenMP spin-waits (docs/speed.md section 12).
    # Subprocesses (the CLI run as a user runs it) inherit the setting.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from helpers import make_minari_dataset, synthetic_episodes  # noqa: E402


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def tiny_minari(minari_root):
    """A tiny Hopper-shaped Minari dataset 'test/hopper/tiny-v0' with a learnable policy."""
    episodes = synthetic_episodes(n_episodes=8, seed=0)
    make_minari_dataset("test/hopper/tiny-v0", episodes)
    return "test/hopper/tiny-v0", episodes
