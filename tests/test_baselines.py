"""mindvideo.baselines: the one ridge decoder, ridge to pixels, rendering conditions with the pipeline's noise, the noise-free
diagnostic's input, paired margins of two methods and of a preset's ablations."""
import numpy as np
import pytest
import torch

from mindvideo.baselines import (ablation_margins, cached_videos, expected_fmri, fit_ridge, generate_from_embeds, noise_free_windows,
                                 paired_margin, ridge_pixels)
from mindvideo.core import InputError, load_preset
from mindvideo.provenance import save_metrics
from mindvideo.testing import toy_clips


# ---- ridge ----------------------------------------------------------------------------------------------------------
def test_fit_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 20)); W = rng.standard_normal((20, 4)); Y = X @ W + 0.05 * rng.standard_normal((300, 4))
    r = fit_ridge(X[:200], Y[:200])
    pred = r.predict(X[200:])
    assert 1 - ((pred - Y[200:]) ** 2).sum() / ((Y[200:] - Y[200:].mean(0)) ** 2).sum() > 0.98
    with pytest.raises(InputError, match="same number of rows"):
        fit_ridge(X, Y[:10])


def test_fit_ridge_on_fmri_windows():  # how 03_contrastive uses it: (N, w, V) windows -> CLIP embeddings
    rng = np.random.default_rng(0)
    W = rng.normal(size=(12, 4))
    X = rng.normal(size=(150, 2, 6)); Y = X.reshape(150, -1) @ W
    m = fit_ridge(X, Y + 0.01 * rng.normal(size=Y.shape))
    Xt = rng.normal(size=(20, 2, 6))
    pred = m.predict(Xt)
    assert pred.shape == (20, 4)
    assert np.corrcoef(pred.ravel(), (Xt.reshape(20, -1) @ W).ravel())[0, 1] > 0.99
    with pytest.raises(InputError, match="same number of rows"):
        fit_ridge(X[:10], Y[:9])


def test_ridge_pixels_shape_and_signal():
    rng = np.random.default_rng(0)
    v, y = toy_clips(80, k=3, frames=4, seed=0, x0=4)  # the square at rows and columns 4 to 11
    fmri = np.eye(3)[y][:, None, :].repeat(2, 1) + 0.05 * rng.standard_normal((80, 2, 3))
    out = ridge_pixels(fmri[:60], v[:60], fmri[60:], size=8)
    assert out.shape == (20, 4, 16, 16, 3) and out.dtype == np.uint8
    centre = out[:, :, 6:10, 6:10].reshape(20, -1, 3).mean(1)  # the coloured square
    assert (centre.argmax(-1) == np.array([0, 1, 2])[y[60:]]).mean() > 0.9


def test_ablation_margins(tmp_path):
    clips = lambda idx, **pc: {"all_test_clips": dict(n=len(idx), index=idx, per_clip=pc)}
    assert ablation_margins(tmp_path, "quick") == ("No per-clip scores of `quick` on every test clip yet: run `mindvideo reproduce --preset quick --only 06_eval`.\n", {})
    save_metrics(clips([0, 1, 2], **{"c/strict/2-way": [1.0, 0.0, 1.0], "c/label": [1.0, None, 0.0]}), "table_main", nb="06_eval", preset="quick", seed=0, out_dir=tmp_path)
    save_metrics(clips([0, 1, 2], **{"c/strict/2-way": [0.0, 0.0, 1.0], "c/label": [1.0, 1.0, 1.0]}), "table_main", nb="06_eval", preset="quick+no_temporal", seed=0, out_dir=tmp_path)
    text, got = ablation_margins(tmp_path, "quick")
    assert list(got) == ["quick+no_temporal"]
    np.testing.assert_allclose([got["quick+no_temporal"]["c/strict/2-way"]["mean"], got["quick+no_temporal"]["c/strict/2-way"]["se"]], [-1 / 3, 1 / 3])
    assert got["quick+no_temporal"]["c/label"]["mean"] == 0.5  # the clip without a label is left out
    assert text.index("c/strict/2-way") < text.index("c/label") and "--preset quick+no_mae --only 06_eval" in text
    save_metrics(clips([0, 2], **{"c/strict/2-way": [1.0, 1.0]}), "table_main", nb="06_eval", preset="quick+no_mae", seed=0, out_dir=tmp_path)
    with pytest.raises(InputError, match="quick\\+no_mae.*same 3 test clips"): ablation_margins(tmp_path, "quick")


def test_cached_videos(tmp_path):
    calls = []
    make = lambda: calls.append(1) or np.full((2, 6, 4, 4, 3), 7, np.uint8)
    a = cached_videos(tmp_path/"v.npz", make); b = cached_videos(tmp_path/"v.npz", make)
    assert len(calls) == 1 and (a == b).all() and a.dtype == np.uint8


def test_generate_from_embeds_pairs_noise_like_reconstruct():
    from types import SimpleNamespace
    seen = []
    class FakePipe:
        vae_scale_factor = 2
        def _latent_channels(self): return 4
        def __call__(self, fmri_embeds, negative_fmri, num_frames, height, width, latents, guidance, **kw):
            seen.append((fmri_embeds.shape, latents.clone(), guidance, negative_fmri is not None))
            return SimpleNamespace(frames=np.full((len(latents), num_frames, height, width, 3), 0.5, np.float32))
    cfg = load_preset("smoke")
    out = generate_from_embeds(FakePipe(), np.zeros((5, 4, 32), np.float32), torch.zeros(2, 16), cfg, 6, 8, batch_size=2)
    assert out.shape == (5, 6, 8, 8, 3) and out.dtype == np.uint8 and (out == 128).all()
    g = torch.Generator().manual_seed(cfg.guidance.seed)
    want = torch.cat([torch.randn((1, 4, 6, 4, 4), generator=g) for _ in range(5)])
    assert torch.equal(torch.cat([s[1] for s in seen]), want)  # the same noise per clip as mindvideo.reconstruct.reconstruct
    assert [s[0][0] for s in seen] == [2, 2, 1] and all(s[2] == cfg.guidance.mode and s[3] for s in seen)
    seen.clear(); generate_from_embeds(FakePipe(), np.zeros((2, 4, 32), np.float32), torch.zeros(2, 16), cfg, 6, 8, index=[4, 1])
    assert torch.equal(torch.cat([s[1] for s in seen]), want[[4, 1]])  # paired with reconstruct's clips of the same items
    with pytest.raises(InputError, match="index: expected one position per condition"):
        generate_from_embeds(FakePipe(), np.zeros((2, 4, 32), np.float32), torch.zeros(2, 16), cfg, 6, 8, index=[0])


# ---- the noise-free oracle's input ----------------------------------------------------------------------------------
def test_expected_fmri_recovers_the_stimulus_driven_part():
    from types import SimpleNamespace
    rng = np.random.default_rng(0)
    sig = rng.standard_normal((3, 80, 5)).astype(np.float32); gain = np.array([0.0, 0.2, 0.5, 0.8, 1.0])
    noise = 0.3 * rng.standard_normal(sig.shape)
    w = SimpleNamespace(signal_test=sig, fmri_test=(gain * sig + noise).astype(np.float32))
    ex = expected_fmri(w, "test")
    assert ex.shape == sig.shape and ex.dtype == np.float32
    np.testing.assert_allclose(ex / np.where(sig == 0, 1, sig), np.broadcast_to(ex[0, 0] / sig[0, 0], sig.shape), rtol=1e-4)  # one gain per voxel
    fitted = (ex * sig).sum((0, 1)) / (sig ** 2).sum((0, 1))
    np.testing.assert_allclose(fitted, gain, atol=0.05)
    # less noise than the measurement: closer to gain * signal than the measured data is
    assert np.mean((ex - gain * sig) ** 2) < 0.1 * np.mean((w.fmri_test - gain * sig) ** 2)


def test_expected_fmri_needs_a_synthetic_world():
    from types import SimpleNamespace
    x = np.zeros((1, 4, 3), np.float32)
    with pytest.raises(InputError, match="noise-free signal"):
        expected_fmri(SimpleNamespace(signal_test=None, fmri_test=x))
    with pytest.raises(InputError, match="split"):
        expected_fmri(SimpleNamespace(signal_val=x, fmri_val=x), "val")
    with pytest.raises(InputError, match="signal_test"):
        expected_fmri(SimpleNamespace(signal_test=np.zeros((1, 4, 2), np.float32), fmri_test=x))


def test_noise_free_windows_refuses_real_data():
    with pytest.raises(InputError, match=r"data\.source.*synthetic.*'wen2018'"):
        noise_free_windows(load_preset("wen2018_smoke"))


# ---- paired comparison of two methods --------------------------------------------------------------------------------
def test_paired_margin_hand_computed():
    m, se = paired_margin([1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0])  # differences 1, 0, 0, 1
    assert m == pytest.approx(0.5) and se == pytest.approx(np.std([1, 0, 0, 1], ddof=1) / 2)
    m, se = paired_margin([0.5, np.nan], [0.25, 0.0])  # one clip left: no standard error
    assert m == pytest.approx(0.25) and np.isnan(se)
    with pytest.raises(InputError, match="per-clip scores"):
        paired_margin(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(InputError, match="found none"):
        paired_margin([np.nan], [1.0])
