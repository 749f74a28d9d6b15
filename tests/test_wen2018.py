"""The real-data path: missing-asset errors, the raw converter, tiny models in the real layouts."""
import numpy as np
import pytest

from mindvideo.core import InputError, load_preset
from mindvideo.layouts import check_assets, missing_assets
from mindvideo.wen2018 import convert_wen2018, make_tiny_models, movie_to_clips, preprocess_fmri_run, read_cifti


def test_missing_assets_listed_in_one_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path))
    with pytest.raises(InputError) as e:
        check_assets(load_preset("wen2018", {"mae.pretrained_path": str(tmp_path / "mae.safetensors")}))
    msg = str(e.value)
    assert "missing 6 asset(s)" in msg
    for name in ("wen2018:", "sd:", "clip:", "vit:", "videomae:", "mae:"):
        assert f"  - {name}" in msg
    assert str(tmp_path / "stable-diffusion-v1-5") in msg and "foundation.sd_path" in msg
    assert "fmri_train_subject1.npy" in msg


def test_partial_folder_names_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path))
    (tmp_path / "vit-base-patch16-224").mkdir()
    (tmp_path / "vit-base-patch16-224" / "config.json").write_text("{}")
    miss = [m for m in missing_assets(load_preset("wen2018")) if m.startswith("vit:")]
    assert len(miss) == 1 and "lacks model.safetensors, preprocessor_config.json" in miss[0]


def test_synthetic_presets_need_no_assets():
    check_assets(load_preset("quick"))


def test_tiny_models_in_real_layouts(tmp_path):
    paths = make_tiny_models(tmp_path)
    cfg = load_preset("wen2018", {"data.data_dir": str(tmp_path)})
    monkey = {k: str(v) for k, v in paths.items()}
    cfg = load_preset("wen2018", {"foundation.sd_path": monkey["sd"], "foundation.clip_path": monkey["clip"],
                                  "eval.vit_path": monkey["vit"], "eval.videomae_path": monkey["videomae"],
                                  "data.data_dir": str(tmp_path)})
    assert [m.split(":")[0] for m in missing_assets(cfg)] == ["wen2018", "hcp"]
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(paths["sd"], safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.config.cross_attention_dim == 32


def test_preprocess_run_errors_and_stats():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="expected 245 volumes"):
        preprocess_fmri_run(rng.normal(size=(200, 3)))
    bad = rng.normal(size=(245, 3)); bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        preprocess_fmri_run(bad)
    out = preprocess_fmri_run(rng.normal(size=(245, 3)) + np.arange(245)[:, None] ** 2 / 1e3)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1, atol=1e-3)


def test_movie_too_short():
    with pytest.raises(InputError, match="expected at least 14400 frames"):
        movie_to_clips(np.zeros((100, 4, 4, 3), np.uint8), size=4)


def test_read_cifti_roundtrip(tmp_path):
    nib = pytest.importorskip("nibabel")
    from nibabel import cifti2
    data = np.random.default_rng(0).normal(size=(245, 5)).astype(np.float32)
    series = cifti2.SeriesAxis(start=0, step=2.0, size=245)
    brain = cifti2.BrainModelAxis.from_mask(np.ones(5, bool), name="CortexLeft")
    img = cifti2.Cifti2Image(data, header=(series, brain))
    img.nifti_header.set_intent("ConnDenseSeries")
    nib.save(img, tmp_path / "seg1_1.dtseries.nii")
    np.testing.assert_allclose(read_cifti(tmp_path / "seg1_1.dtseries.nii"), data)
    with pytest.raises(InputError, match="file not found"):
        read_cifti(tmp_path / "nope.dtseries.nii")


def test_convert_checks_segments_and_captions(tmp_path):
    rng = np.random.default_rng(0)
    runs = {("train", 0): [rng.normal(size=(245, 4))], ("test", 0): [rng.normal(size=(245, 4))]}
    movies = {("train", 0): np.zeros((14400, 4, 4, 3), np.uint8)}
    with pytest.raises(InputError, match="movies: expected the same test segments"):
        convert_wen2018(runs, movies, {"train": np.full((1, 240, 6), "x"), "test": np.full((1, 240, 6), "x")}, np.array([0]), tmp_path, size=4)
    movies[("test", 0)] = np.zeros((14400, 4, 4, 3), np.uint8)
    with pytest.raises(InputError, match="captions: expected a 'test' entry"):
        convert_wen2018(runs, movies, {"train": np.full((1, 240, 6), "x")}, np.array([0]), tmp_path, size=4)
    with pytest.raises(InputError, match=r"captions\['train'\]: expected shape \(1, 240, 6\)"):
        convert_wen2018(runs, movies, {"train": np.full((1, 240, 5), "x"), "test": np.full((1, 240, 6), "x")}, np.array([0]), tmp_path, size=4)
    assert not (tmp_path / "preprocessed" / "fmri_train_subject1.npy").exists()


def test_hcp_required_without_mae_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path))
    assert any(m.startswith("hcp:") and "HCP_visual_voxel.npz" in m for m in missing_assets(load_preset("wen2018")))


def test_tiny_assets_satisfy_wen2018_smoke(tmp_path, monkeypatch):
    from mindvideo.wen2018 import make_tiny_assets
    from mindvideo.data import load_dataset
    from mindvideo.pretrain_fmri import load_pretrain_fmri
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path))
    make_tiny_assets(tmp_path)
    cfg = load_preset("wen2018_smoke")
    check_assets(cfg)
    ds = load_dataset(cfg, "train")
    assert ds[0]["fmri"].shape == (2, ds.num_voxels) and ds.num_voxels % 16 == 0
    assert ds[0]["video"].shape[0] == 6
    assert len(load_pretrain_fmri(cfg)) == 3


def test_runner_checks_assets_before_any_notebook(tmp_path, monkeypatch):
    from pathlib import Path
    from mindvideo.reproduce import reproduce
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path))
    root = Path(__file__).resolve().parents[1]
    with pytest.raises(InputError, match=r"missing 6 asset\(s\)"):
        reproduce("wen2018", project=root)
    assert not (root / "runs" / "wen2018" / "run.json").exists()


def test_release_preset_lists_its_own_assets(tmp_path, monkeypatch):
    "The authors'-model preset needs the data, a checkpoint per subject and the two classifiers, and nothing to train with."
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path))
    miss = missing_assets(load_preset("wen2018_release"))
    names = [m.split(":")[0] for m in miss]
    assert names == ["wen2018", "release sub1", "release sub2", "release sub3", "vit", "videomae"], names
    assert str(tmp_path / "pretrains" / "sub2") in miss[2]
