import numpy as np
import pytest
import torch

from decision_minrnn.data import Episode, ObsNormalizer, OfflineDataset, WindowSampler, returns_to_go


def make_dataset(lengths, obs_dim=3, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    episodes = [
        Episode(
            rng.normal(size=(n, obs_dim)).astype(np.float32),
            rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            rng.normal(size=n).astype(np.float32),
            True,
            False,
        )
        for n in lengths
    ]
    return OfflineDataset("test", episodes, "Hopper-v5", None)


def test_returns_to_go_matches_reference_loop():
    rew = np.random.default_rng(0).normal(size=50).astype(np.float32)
    expected = [sum(rew[t:].astype(np.float64)) / 1000.0 for t in range(50)]
    np.testing.assert_allclose(returns_to_go(rew, 1000.0), expected, rtol=1e-5, atol=1e-7)


def test_normalizer_uses_whole_dataset_mean_std():
    ds = make_dataset([4, 9])
    norm = ObsNormalizer.fit(ds.episodes)
    all_obs = np.concatenate([e.obs for e in ds.episodes]).astype(np.float64)
    np.testing.assert_allclose(norm.mean, all_obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.std, all_obs.std(0) + 1e-6, rtol=1e-5)
    assert ObsNormalizer.from_dict(norm.to_dict()).mean.tolist() == norm.mean.tolist()


def test_windows_are_consecutive_steps_with_right_padding_and_mask():
    ds = make_dataset([3, 10])
    norm = ObsNormalizer.fit(ds.episodes)
    sampler = WindowSampler(ds, norm, context_len=6, batch_size=256, rtg_scale=10.0, max_ep_len=5, seed=1)
    batch = sampler.sample()
    assert batch["obs"].shape == (256, 6, 3) and batch["act"].shape == (256, 6, 2)
    assert batch["rtg"].shape == (256, 6, 1) and batch["timesteps"].shape == (256, 6)
    flat_obs = [norm(e.obs) for e in ds.episodes]
    rtgs = [returns_to_go(e.rew, 10.0) for e in ds.episodes]
    for i in range(256):
        mask = batch["mask"][i]
        n_real = int(mask.sum())
        assert mask[:n_real].all() and not mask[n_real:].any()  # real steps first, padding after
        # find the episode and step this window starts at by matching its first observation
        ep, t0 = next(
            (k, t)
            for k, o in enumerate(flat_obs)
            for t in range(len(o))
            if np.allclose(o[t], batch["obs"][i, 0].numpy(), atol=1e-5)
        )
        assert n_real == min(6, len(flat_obs[ep]) - t0)  # runs to the episode end at most
        np.testing.assert_allclose(batch["obs"][i, :n_real].numpy(), flat_obs[ep][t0 : t0 + n_real], atol=1e-5)
        np.testing.assert_allclose(batch["rtg"][i, :n_real, 0].numpy(), rtgs[ep][t0 : t0 + n_real], atol=1e-5)
        assert batch["timesteps"][i, :n_real].tolist() == [min(t, 4) for t in range(t0, t0 + n_real)]
        assert (batch["obs"][i, n_real:] == 0).all() and (batch["act"][i, n_real:] == 0).all()


def test_episodes_drawn_proportional_to_length():
    ds = make_dataset([10, 30, 60])
    sampler = WindowSampler(ds, ObsNormalizer.fit(ds.episodes), context_len=1, batch_size=20000, seed=0)
    sizes = torch.tensor([10, 30, 60])
    starts = torch.tensor([0, 10, 40])
    ep = torch.multinomial(sampler.probs, 1, generator=torch.Generator().manual_seed(0))  # smoke: probs valid
    assert ep.item() in (0, 1, 2)
    # Identify episodes through the normalized first observation of each window.
    obs = sampler.obs
    batch = sampler.sample()["obs"][:, 0]
    index = torch.cdist(batch, obs).argmin(1)
    counts = torch.stack([((index >= s) & (index < s + n)).sum() for s, n in zip(starts, sizes)]).double()
    freqs = counts / counts.sum()
    torch.testing.assert_close(freqs, sizes.double() / sizes.sum(), atol=0.015, rtol=0)


def test_episode_mode_gives_whole_episodes_from_the_start():
    ds = make_dataset([7, 12, 4])
    sampler = WindowSampler(ds, ObsNormalizer.fit(ds.episodes), context_len=3, batch_size=16, mode="episode", seed=0)
    assert sampler.context_len == 12
    for _ in range(20):
        batch = sampler.sample()
        assert (batch["timesteps"][:, 0] == 0).all()
        lengths = set(batch["mask"].sum(1).tolist())
        assert lengths <= {4, 7, 12}
        # one bucket of similar lengths per batch (these three differ by more than the ratio), K its longest
        assert len(lengths) == 1 and batch["mask"].shape[1] == max(lengths)


def test_sampler_is_seeded_and_resumable():
    ds = make_dataset([20, 30])
    norm = ObsNormalizer.fit(ds.episodes)
    s1 = WindowSampler(ds, norm, 5, 8, seed=3)
    s2 = WindowSampler(ds, norm, 5, 8, seed=3)
    s1.sample()
    state = s1.get_state()
    b1 = s1.sample()
    s2.set_state(state)
    b2 = s2.sample()
    for k in b1:
        assert torch.equal(b1[k], b2[k])


def test_unknown_mode_is_an_error():
    ds = make_dataset([5])
    with pytest.raises(ValueError):
        WindowSampler(ds, ObsNormalizer.fit(ds.episodes), 5, 2, mode="random")


def test_episode_batches_keep_padding_under_ten_percent_and_draw_episodes_by_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 1000, size=200).tolist()
    ds = make_dataset(lengths)
    sampler = WindowSampler(ds, ObsNormalizer.fit(ds.episodes), 20, 8, mode="episode", seed=0)
    real = total = 0
    counts = np.zeros(len(lengths))
    for _ in range(3000):
        batch = sampler.sample()
        real, total = real + int(batch["mask"].sum()), total + batch["mask"].numel()
        batch_lengths = batch["mask"].sum(1)
        assert batch["mask"].shape[1] == int(batch_lengths.max()) <= 1.1 * int(batch_lengths.min())
        for length in batch_lengths.tolist():
            counts[lengths.index(length)] += 1  # lengths are distinct enough for this sample's check below
    assert 1 - real / total < 0.1
    # each episode's share of the draws follows its length (as DT draws windows), within sampling noise
    share, expected = counts / counts.sum(), np.array(lengths) / sum(lengths)
    big = expected > np.median(expected)
    assert abs(share[big].sum() - expected[big].sum()) < 0.02
