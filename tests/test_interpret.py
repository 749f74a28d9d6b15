"""mindvideo.interpret: patch-to-voxel mapping (with the wrap-padded voxels), attention and attribution summaries."""
import numpy as np
import pytest
import torch

from mindvideo.core import InputError
from mindvideo.cortexplot import N_VERTICES, voxels_to_vertices
from mindvideo.interpret import (AREAS, area_chance, area_mass, attention_received, collect_attention,
                                 fold_padded, layer_trend, padded_source_index, patch_to_voxel, permutation_null,
                                 summarise_areas, voxel_attribution, voxel_to_patch)


def _wrap_pad(x, patch_size):
    "What the data loader does: numpy 'wrap' padding of the voxel axis to a multiple of patch_size."
    V = x.shape[-1]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, (-V) % patch_size)], mode="wrap")


# ---------------------------------------------------------------- patch -> voxel
@pytest.mark.parametrize("V,P", [(10, 4), (37, 16), (300, 16), (5, 16), (32, 16)])
def test_source_index_inverts_numpy_wrap_padding(V, P):
    x = np.random.default_rng(0).normal(size=(3, V))
    xp = _wrap_pad(x, P) if V % P else np.pad(x, [(0, 0), (0, P)], mode="wrap")  # also the release's "always pad" variant
    src = padded_source_index(V, xp.shape[-1])
    np.testing.assert_array_equal(x[:, src], xp)
    np.testing.assert_allclose(fold_padded(xp, V, "mean"), x)
    np.testing.assert_allclose(fold_padded(xp, V, "drop"), x)


def test_padded_columns_map_to_their_source_voxels():
    # 10 voxels, patches of 4 -> 12 columns, 3 tokens; columns 10, 11 (token 2) are copies of voxels 0, 1
    w = np.array([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(patch_to_voxel(w, 10, 4, "mean"), [2.5, 2.5, 1, 1, 2, 2, 2, 2, 4, 4])
    np.testing.assert_array_equal(patch_to_voxel(w, 10, 4, "sum"), [5, 5, 1, 1, 2, 2, 2, 2, 4, 4])
    np.testing.assert_array_equal(patch_to_voxel(w, 10, 4, "drop"), [1, 1, 1, 1, 2, 2, 2, 2, 4, 4])
    # only the padded copies differ between 'mean' and 'drop'
    diff = patch_to_voxel(w, 10, 4, "mean") != patch_to_voxel(w, 10, 4, "drop")
    np.testing.assert_array_equal(np.where(diff)[0], [0, 1])


def test_attention_only_on_padding_lands_on_first_voxels():
    V, P = 20, 16  # 32 columns, 2 tokens; token 1 = voxels 16..19 and copies of voxels 0..11
    v = patch_to_voxel(np.array([0.0, 1.0]), V, P, "sum")
    np.testing.assert_array_equal(v, [1] * 12 + [0] * 4 + [1] * 4)
    assert np.all(patch_to_voxel(np.array([0.0, 1.0]), V, P, "drop")[:16] == 0)


def test_patch_to_voxel_batched_uniform_and_errors():
    w = np.random.default_rng(1).random((4, 3, 19))  # (samples, layers, L)
    v = patch_to_voxel(w, 300, 16)
    assert v.shape == (4, 3, 300)
    np.testing.assert_allclose(v[2, 1], patch_to_voxel(w[2, 1], 300, 16))
    np.testing.assert_allclose(patch_to_voxel(np.ones(19), 300, 16), np.ones(300))
    np.testing.assert_allclose(patch_to_voxel(w, 300, 16, "sum").sum(-1), 16 * w.sum(-1))  # 'sum' conserves mass
    with pytest.raises(InputError, match="num_voxels=400"): patch_to_voxel(w, 400, 16)
    with pytest.raises(InputError, match="reduce"): fold_padded(np.ones(8), 5, "max")
    with pytest.raises(InputError, match="num_padded"): padded_source_index(10, 8)


def test_voxel_to_patch_includes_the_padded_copies():
    # token 2 covers voxels 8, 9 and the copies of voxels 0, 1
    np.testing.assert_allclose(voxel_to_patch(np.arange(10.0), 12, 4), [1.5, 5.5, 4.5])
    area = np.repeat([0, 1, 2], [40, 40, 20]); P = 16; Vp = 112  # 7 tokens, 12 padded columns
    frac = voxel_to_patch((area > 0).astype(float), Vp, P)
    assert frac.shape == (7,) and frac[-1] == pytest.approx(4 / 16)  # voxels 96..99 visual, copies of 0..11 not
    with pytest.raises(InputError, match="num_padded"): voxel_to_patch(np.ones(10), 13, 4)


# ---------------------------------------------------------------- attention
class _Enc(torch.nn.Module):
    "Contract stand-in for FMRIEncoder: keys score by their patch mean; optional temporal attention."
    def __init__(self, P=4, depth=3, temporal=True):
        super().__init__(); self.P, self.depth, self.temporal = P, depth, temporal
        self.lin = torch.nn.Linear(P, 5)
    def forward(self, fmri, output_attentions=False):
        B, w, Vp = fmri.shape; L = Vp // self.P
        x = fmri.reshape(B, w, L, self.P); attns = []
        for d in range(self.depth):
            sp = torch.softmax((d + 1) * x.mean(-1)[:, :, None, None, :].expand(B, w, 2, L, L), -1)
            attns.append(dict(spatial=sp, temporal=torch.full((B, L, 2, w, w), 1 / w) if self.temporal else None))
        tok = self.lin(x).mean(2)
        return (tok, attns) if output_attentions else tok


def test_attention_received_is_a_distribution():
    a = torch.softmax(torch.randn(3, 2, 4, 7, 7), -1)
    r = attention_received(a)
    assert r.shape == (3, 7)
    torch.testing.assert_close(r.sum(-1), torch.ones(3))
    with pytest.raises(InputError, match="spatial"): attention_received(torch.ones(3, 4, 7, 7))


def test_collect_attention_finds_the_active_patch_and_maps_to_its_area():
    V, P = 10, 4
    fmri = torch.zeros(5, 2, 12); fmri[:, :, 4:8] = 2.0
    att = collect_attention(_Enc(P), fmri, batch_size=2)
    assert att["received"].shape == (5, 3, 3) and att["temporal"].shape == (3, 2, 2)
    np.testing.assert_allclose(att["received"].sum(-1), 1.0, rtol=1e-5)
    area = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    rows = summarise_areas(att["received"].mean(0), area, P, n_perm=50)
    assert [r["layer"] for r in rows] == [0, 1, 2]
    masses = [r["mass_early visual"] for r in rows]
    assert masses[0] > 0.5 and masses == sorted(masses)  # deeper toy layers are sharper
    assert all(r["visual_ratio"] > r["visual_ratio_chance"] for r in rows)
    assert collect_attention(_Enc(P, temporal=False), fmri)["temporal"] is None


def test_collect_attention_accepts_a_dataset():
    class DS(torch.utils.data.Dataset):
        def __len__(self): return 3
        def __getitem__(self, i): return dict(fmri=torch.ones(2, 8) * i, label=0)
    att = collect_attention(_Enc(4, depth=1), DS())
    assert att["received"].shape == (3, 1, 2)


# ---------------------------------------------------------------- areas and chance
def test_area_mass_chance_and_null():
    area = np.repeat([0, 1, 2], [50, 30, 20])
    np.testing.assert_allclose(area_chance(area), [0.5, 0.3, 0.2])
    np.testing.assert_allclose(area_mass(np.ones(100), area), [0.5, 0.3, 0.2])  # uniform attention = chance
    w = np.zeros(100); w[50:80] = 1
    np.testing.assert_allclose(area_mass(w, area), [0, 1, 0])
    null = permutation_null(np.random.default_rng(0).random(7), area, 16, n_perm=400)
    assert null.shape == (400, 3)
    np.testing.assert_allclose(null.mean(0), [0.5, 0.3, 0.2], atol=0.05)
    with pytest.raises(InputError, match="voxel_area"): area_mass(np.ones(5), area)
    with pytest.raises(InputError, match="unknown area"): area_mass(np.ones(3), np.array([0, 1, -1]))  # real data: no ground truth


def test_summary_uniform_is_at_chance_and_trend():
    area = np.repeat([0, 1, 2], [48, 24, 24])
    rows = summarise_areas(np.ones((2, 6)) / 6, area, 16, n_perm=20)
    for r in rows:
        for a in AREAS: assert r[f"enrichment_{a}"] == pytest.approx(1.0)
        assert r["visual_ratio"] == pytest.approx(r["visual_ratio_chance"]) == pytest.approx(1.0)
    # 12 tokens: non-visual = tokens 0-5, early visual = tokens 6-8, higher visual = tokens 9-11
    area12 = np.repeat([0, 1, 2], [96, 48, 48])
    tw = np.ones((3, 12)); tw[0, 6:9] = 8; tw[1, 6:12] = 4; tw[2, 9:12] = 8
    tr = layer_trend(summarise_areas(tw, area12, 16, n_perm=500))
    assert tr["paper_direction"] and tr["slope_early visual"] < 0 < tr["slope_higher visual"]
    assert tr["first_layer_early_visual"] and tr["last_layer_higher_visual"] and tr["trend_reproduced"]
    assert tr["visual_dominance"] == [True, True, True]
    assert not layer_trend(summarise_areas(tw[::-1], area12, 16, n_perm=500))["trend_reproduced"]
    flat = layer_trend(summarise_areas(np.ones((3, 12)), area12, 16, n_perm=200))
    assert not flat["trend_reproduced"] and flat["visual_dominance"] == [False] * 3


# ---------------------------------------------------------------- attribution
def test_gradient_attribution_sums_the_padded_copies():
    W = torch.zeros(3, 12); W[0, 0] = 1.0; W[1, 10] = 2.0  # column 10 is the padded copy of voxel 0
    lin = torch.nn.Linear(12, 3, bias=False); lin.weight.data = W
    g = voxel_attribution(lin, torch.ones(2, 2, 12), 10, n_probes=400, times_input=False)
    assert g.shape == (10,)
    assert g[0] == pytest.approx(np.sqrt(5), rel=0.15)  # |d y / d x_0| = ||W[:, 0] + W[:, 10]||
    np.testing.assert_allclose(g[1:], 0)
    gx = voxel_attribution(lin, 3 * torch.ones(2, 2, 12), 10, n_probes=400)  # x input
    assert gx[0] == pytest.approx(3 * np.sqrt(5), rel=0.15)


def test_attribution_works_on_the_tuple_returning_stand_in():
    a = voxel_attribution(_Enc(4), torch.randn(3, 2, 12), 10, n_probes=2)
    assert a.shape == (10,) and np.isfinite(a).all()


# ---------------------------------------------------------------- cortex
def test_voxels_to_vertices():
    vv = np.array([3, 3, 100, N_VERTICES + 5])  # two voxels on one vertex are averaged
    m = voxels_to_vertices(np.array([1.0, 3.0, 5.0, 7.0]), vv, radius=0)
    assert m.shape == (2 * N_VERTICES,)
    assert m[3] == 2.0 and m[100] == 5.0 and m[N_VERTICES + 5] == 7.0
    assert np.isfinite(m).sum() == 3
    wide = voxels_to_vertices(np.array([1.0, 3.0, 5.0, 7.0]), vv, radius=20.0)
    assert np.isfinite(wide).sum() > 3 and np.nanmax(wide) == 7.0
    with pytest.raises(InputError, match="voxel_vertex"): voxels_to_vertices(np.ones(2), np.array([0, 2 * N_VERTICES]))


def test_real_encoder_contract_if_available():
    mae = pytest.importorskip("mindvideo.mae")
    torch.manual_seed(0)
    enc = mae.FMRIEncoder(num_voxels=32, patch_size=16, embed_dim=8, depth=3, num_heads=2, mlp_ratio=1.0,
                          window_size=2, temporal_attention=True, out_tokens=2, out_dim=4)
    fmri = torch.from_numpy(_wrap_pad(np.random.default_rng(0).normal(size=(4, 2, 20)).astype(np.float32), 16))
    att = collect_attention(enc, fmri)
    assert att["received"].shape == (4, 3, 2) and att["temporal"].shape == (3, 2, 2)
    np.testing.assert_allclose(att["received"].sum(-1), 1.0, rtol=1e-5)
    a = voxel_attribution(enc, fmri, 20, n_probes=2)
    assert a.shape == (20,) and np.isfinite(a).all()


# ---------------------------------------------------------------- the cached stage, with stand-ins for the upstream stages
def test_interpret_encoders_computes_then_loads_from_cache(tmp_cache, monkeypatch):
    import types
    import mindvideo.interpret as mi
    rng = np.random.default_rng(0)
    V, P = 40, 16  # padded to 48 columns, 3 tokens
    world = types.SimpleNamespace(voxel_area=np.repeat([0, 1, 2], [20, 10, 10]), voxel_vertex=np.arange(V),
                                  noise_ceiling=rng.random(V))
    fm = torch.from_numpy(_wrap_pad(rng.normal(size=(6, 2, V)).astype(np.float32), P))
    ds = types.SimpleNamespace(num_voxels=48)
    calls = []
    monkeypatch.setattr(mi, "load_world", lambda cfg, seed=0: world)
    monkeypatch.setattr(mi, "load_dataset", lambda cfg, split, seed=0, subject=None: ds)
    monkeypatch.setattr(mi, "_as_fmri_tensor", lambda x: fm if x is ds else torch.as_tensor(x))
    monkeypatch.setattr(mi, "_stage_encoder", lambda cfg, stage, nv, seed: calls.append(stage) or _Enc(P, depth=2))
    res = mi.interpret_encoders("smoke", stages=("untrained", "mae"), n_perm=20, n_probes=2)
    assert calls == ["untrained", "mae"]
    r = res["mae"]
    assert r["received"].shape == (6, 2, 3) and r["attribution"].shape == (V,) and len(r["rows"]) == 2
    assert {"sem_early visual", "visual_ratio", "p_visual_ratio"} <= set(r["rows"][0]) and "trend_reproduced" in r["trend"]
    again = mi.interpret_encoders("smoke", stages=("untrained", "mae"), n_perm=20, n_probes=2)
    assert calls == ["untrained", "mae"]  # nothing recomputed
    np.testing.assert_allclose(again["mae"]["received"], r["received"], rtol=1e-6)
    assert again["mae"]["rows"] == r["rows"]
    with pytest.raises(Exception, match="stages"): mi.interpret_encoders("smoke", stages=("nope",))
