import json

import numpy as np
import pytest
from helpers import make_d4rl_file, make_minari_dataset, synthetic_episodes

from decision_minrnn.cli import main
from decision_minrnn.data import load_d4rl_hdf5, load_source
from decision_minrnn.errors import DataError


def test_minari_source_drops_the_extra_observation(tiny_minari):
    dataset_id, raw = tiny_minari
    ds = load_source(dataset_id)
    assert len(ds.episodes) == len(raw)
    for ep, r in zip(ds.episodes, raw):
        assert len(ep) == len(r["rewards"])
        np.testing.assert_allclose(ep.obs, r["observations"][:-1], rtol=1e-6)
        np.testing.assert_allclose(ep.act, r["actions"], rtol=1e-6)
        assert ep.terminated == bool(r["terminations"][-1]) and ep.truncated == bool(r["truncations"][-1])
    assert ds.env_id == "Hopper-v5"
    assert ds.ref_scores.source == "minari metadata"


def test_d4rl_split_at_terminals_and_timeouts(tmp_path):
    raw = synthetic_episodes(n_episodes=5, lengths=[5, 7, 3, 9, 4])
    path = make_d4rl_file(tmp_path / "hopper-medium-v2.hdf5", raw)
    ds = load_d4rl_hdf5(str(path))
    assert [len(e) for e in ds.episodes] == [5, 7, 3, 9, 4]
    assert [e.terminated for e in ds.episodes] == [True, False, True, False, True]
    assert [e.truncated for e in ds.episodes] == [False, True, False, True, False]
    assert ds.env_id == "Hopper-v5" and ds.ref_scores.source == "D4RL table"
    assert load_d4rl_hdf5(str(path), env_version="v4").env_id == "Hopper-v4"


def test_d4rl_trailing_segment_is_a_truncated_episode(tmp_path):
    raw = synthetic_episodes(n_episodes=2, lengths=[4, 6])
    raw[1]["truncations"][-1] = False  # the file is cut mid-episode
    ds = load_d4rl_hdf5(str(make_d4rl_file(tmp_path / "walker2d-x.hdf5", raw)))
    assert [len(e) for e in ds.episodes] == [4, 6]
    assert ds.episodes[1].truncated and not ds.episodes[1].terminated
    assert ds.env_id == "Walker2d-v5"


def test_composition_concatenates_and_reports_sizes(minari_root, tmp_path, capsys):
    a, b = synthetic_episodes(4, seed=1), synthetic_episodes(3, seed=2)
    make_minari_dataset("test/hopper/a-v0", a)
    make_minari_dataset("test/hopper/b-v0", b)
    path = make_d4rl_file(tmp_path / "hopper-c.hdf5", synthetic_episodes(2, seed=3))
    ds = load_source(["test/hopper/a-v0", "test/hopper/b-v0", str(path)])
    assert len(ds.episodes) == 9
    assert ds.num_steps == sum(len(e["rewards"]) for e in a + b) + sum(
        len(e) for e in load_d4rl_hdf5(str(path)).episodes
    )
    assert main(["datasets", "info", "test/hopper/a-v0+test/hopper/b-v0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 7 and info["parts"] == ["test/hopper/a-v0", "test/hopper/b-v0"]
    assert info["steps"] == sum(len(e["rewards"]) for e in a + b)


def test_info_reports_normalized_behaviour_score(tiny_minari, capsys):
    dataset_id, raw = tiny_minari
    assert main(["datasets", "info", dataset_id, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    mean_ret = np.mean([r["rewards"].sum() for r in raw])
    assert info["return"]["mean"] == pytest.approx(mean_ret, rel=1e-5)
    assert info["normalized_behaviour_score"] == pytest.approx(
        100 * (mean_ret + 20.272305) / (3234.3 + 20.272305), rel=1e-5
    )
    assert main(["datasets", "list"]) == 0
    assert dataset_id in capsys.readouterr().out


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def test_unknown_minari_id_names_id_and_path(minari_root, capsys):
    assert main(["datasets", "info", "nobody/hopper/nothing-v0"]) == 2
    line = _error_line(capsys)
    assert "nobody/hopper/nothing-v0" in line and str(minari_root) in line


@pytest.mark.parametrize("case", ["missing", "corrupt", "missing_key", "nan_obs", "nan_rew", "zero_length", "bad_dims"])
def test_bad_hdf5_inputs_exit_2_with_one_line(tmp_path, capsys, case):
    path = tmp_path / "hopper-bad.hdf5"
    raw = synthetic_episodes(3, seed=4)
    if case == "corrupt":
        path.write_bytes(b"this is not hdf5" * 10)
    elif case == "missing_key":
        make_d4rl_file(path, raw, drop_keys=("timeouts",))
    elif case == "nan_obs":
        make_d4rl_file(path, raw, nan_obs=True)
    elif case == "nan_rew":
        raw[1]["rewards"][2] = np.inf
        make_d4rl_file(path, raw)
    elif case == "zero_length":
        import h5py

        with h5py.File(path, "w") as f:
            for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
                f.create_dataset(key, data=np.zeros((0, 3)))
    elif case == "bad_dims":
        import h5py

        make_d4rl_file(path, raw)
        with h5py.File(path, "a") as f:
            del f["actions"]
            f.create_dataset("actions", data=np.zeros((5, 3)))
    assert main(["datasets", "info", str(path)]) == 2
    line = _error_line(capsys)
    assert "hopper-bad.hdf5" in line


def test_nan_in_minari_data_is_an_error(minari_root, capsys):
    raw = synthetic_episodes(3)
    raw[2]["observations"][4, 0] = np.nan
    make_minari_dataset("test/hopper/nan-v0", raw)
    assert main(["datasets", "info", "test/hopper/nan-v0"]) == 2
    assert "NaN" in _error_line(capsys)


def test_composition_with_mismatched_dims_is_an_error(minari_root, tmp_path, capsys):
    make_minari_dataset("test/hopper/a-v0", synthetic_episodes(2))
    other = make_d4rl_file(tmp_path / "hopper-wide.hdf5", synthetic_episodes(2, obs_dim=17))
    with pytest.raises(DataError, match="dims differ"):
        load_source(["test/hopper/a-v0", str(other)])
    assert main(["datasets", "info", "test/hopper/a-v0", str(other)]) == 2
    assert "dims differ" in _error_line(capsys)


def test_minari_eval_env_spec_wins_over_collection_env(minari_root):
    make_minari_dataset("test/hopper/evalenv-v0", synthetic_episodes(2), eval_env="Hopper-v4")
    assert load_source("test/hopper/evalenv-v0").env_id == "Hopper-v4"


def test_the_d4rl_writer_round_trips_through_the_reader(tmp_path, minari_root):
    from decision_minrnn.data.episodes import write_d4rl_hdf5

    make_minari_dataset("test/hopper/rt-v0", synthetic_episodes(5, seed=4))
    original = load_source(["test/hopper/rt-v0"]).episodes
    for compress in (False, True):
        path = write_d4rl_hdf5(tmp_path / f"hopper-rt-{compress}.hdf5", original, attrs={"k": "v"}, compress=compress)
        again = load_d4rl_hdf5(str(path)).episodes
        assert len(again) == len(original)
        for a, b in zip(original, again):
            assert (a.terminated, a.truncated, len(a)) == (b.terminated, b.truncated, len(b))
            for x, y in ((a.obs, b.obs), (a.act, b.act), (a.rew, b.rew)):
                np.testing.assert_array_equal(x.astype(np.float32), y)


def test_reference_scores_whose_max_is_not_above_their_min_are_refused(minari_root):
    """Issue 36, class 6: every normalized score would flip its sign or divide by zero."""
    make_minari_dataset("test/hopper/refs-v0", synthetic_episodes(3, seed=0), ref_scores=(3234.3, -20.3))
    with pytest.raises(DataError, match="ref_max_score -20.3 is not above ref_min_score 3234.3"):
        load_source("test/hopper/refs-v0")
