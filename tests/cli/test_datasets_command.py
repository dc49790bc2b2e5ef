"""Data the commands cannot use (`decision-minrnn datasets info`, and every command that loads data): one
line, and a missing Minari id fails at once on a machine that cannot download."""

import numpy as np
import pytest
from helpers import (
    one_line_error,
    refused,
    snapshot,
)

from decision_minrnn.cli import main


def test_string_rewards_in_an_hdf5_are_one_line(tmp_path, capsys):
    import h5py

    path = tmp_path / "hopper-medium-v2.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((4, 11))
        f["actions"] = np.zeros((4, 3))
        f["rewards"] = np.array([b"a", b"b", b"c", b"d"])
        f["terminals"] = np.array([0, 0, 0, 1])
        f["timeouts"] = np.zeros(4)
    assert main(["datasets", "info", str(path)]) == 2
    one_line_error(capsys, "rewards has dtype")


def test_an_unlabelled_file_is_not_given_another_parts_environment(tmp_path, capsys):
    from helpers import make_d4rl_file, synthetic_episodes

    walker = make_d4rl_file(tmp_path / "walker2d-medium-v2.hdf5", synthetic_episodes(3, obs_dim=17, act_dim=6))
    unknown = make_d4rl_file(tmp_path / "mystery.hdf5", synthetic_episodes(3, obs_dim=17, act_dim=6))
    assert main(["datasets", "info", f"{unknown}+{walker}"]) == 2
    one_line_error(capsys, "cannot tell which environment mystery comes from")
    assert main(["datasets", "info", f"{unknown}+{walker}", "--env-id", "Walker2d-v5"]) == 0


@pytest.mark.parametrize("why", ["HF_HUB_OFFLINE", "no name resolution"])
def test_a_missing_minari_id_fails_at_once_without_downloading(minari_root, capsys, monkeypatch, why):
    import socket

    import minari

    real_load = minari.load_dataset

    def load(dataset_id, download=False):
        assert not download, "minari's download (and huggingface_hub's 24 s of retries) must not start"
        return real_load(dataset_id, download=False)

    monkeypatch.setattr(minari, "load_dataset", load)
    if why == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        message = "and HF_HUB_OFFLINE is set, so it was not downloaded"
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

        def no_dns(host, *args, **kwargs):
            raise socket.gaierror(-2, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", no_dns)
        message = "huggingface.co does not resolve"
    before = snapshot(minari_root, dirs=True)
    refused(capsys, ["datasets", "info", "mujoco/hopper/nowhere-v0"], "'mujoco/hopper/nowhere-v0' is not in", message)
    assert snapshot(minari_root, dirs=True) == before
