"""A corpus of bad inputs: each gives one error whose message names the file or key and what was expected."""
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import write_notebook
from mindvideo.core import ConfigError, InputError, load_npy, load_preset
from mindvideo.paths import data_fingerprint, stage_dir
from mindvideo.data import load_world
from mindvideo.layouts import _read_fmri, load_hcp_npz, process_voxel_ts, read_wen_split, save_wen_layout
from mindvideo.evaluate import read_clips, split_release_gif
from mindvideo.foundation import load_foundation_from
from mindvideo.mae import build_mae, load_pretrained_mae, pretrain_mae
from mindvideo.release import load_weights
from mindvideo.reproduce import main, reproduce
from mindvideo.sample import read_windows
from mindvideo.wen2018 import make_tiny_assets, make_tiny_models

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")

# ---- presets: unknown keys, wrong types, out-of-range and non-finite values name the key ---------------------------
PRESET_CASES = [
    ("nope", None, "unknown preset 'nope'"),
    ("smoke+no_such", None, "unknown ablation 'no_such'"),
    ("smoke", {"mae.mask_ratoi": 0.5}, "unknown key smoke.mae.mask_ratoi"),
    ("smoke", {"mae": 1}, "unknown override key 'mae'"),
    ("smoke", {"mae.mask_ratio": 1.5}, "smoke.mae.mask_ratio"),
    ("smoke", {"mae.lr": NAN}, "smoke.mae.lr: expected a finite number"),
    ("smoke", {"data.snr": NAN}, "smoke.data.snr: expected a finite number"),
    ("smoke", {"data.tr": INF}, "smoke.data.tr: expected a finite number"),
    ("smoke", {"guidance.scale": -INF}, "smoke.guidance.scale"),
    ("smoke", {"guidance.sweep_scales": (1.0, NAN)}, "smoke.guidance.sweep_scales: expected a finite number"),
    ("smoke", {"data.n_voxels": "many"}, "smoke.data.n_voxels: expected a value of type"),
    ("smoke", {"data.n_voxels": True}, "smoke.data.n_voxels: expected a value of type"),
    ("smoke", {"diffusion.unet_layout": "unet3d"}, "smoke.diffusion.unet_layout: expected one of"),
    ("smoke", {"diffusion.checkpoint": "mine"}, "smoke.diffusion.checkpoint: expected one of"),
    ("smoke", {"data.world_seed": 1.5}, "smoke.data.world_seed: expected a value of type"),
]


@pytest.mark.parametrize("name, ov, msg", PRESET_CASES, ids=[f"preset-{i}" for i in range(len(PRESET_CASES))])
def test_bad_presets(name, ov, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        load_preset(name, ov)


# ---- .npy files ------------------------------------------------------------------------------------------------------
def _npy_cases(d: Path):
    np.save(d / "ok.npy", np.ones((2, 3)))
    raw = (d / "ok.npy").read_bytes()
    (d / "empty.npy").write_bytes(b"")
    (d / "truncated.npy").write_bytes(raw[:90])
    (d / "garbage.npy").write_bytes(b"this is not numpy" * 4)
    np.save(d / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "nan.npy", np.array([1.0, NAN]))
    return [("missing.npy", "missing.npy: file not found"), ("empty.npy", "empty.npy: expected a .npy array, found an empty file"),
            ("truncated.npy", "truncated.npy: expected a .npy array, found a truncated"),
            ("garbage.npy", r"garbage.npy: expected a .npy array \(it starts with"),
            ("object.npy", "object.npy: expected a numeric or string array, found an object array"),
            ("nan.npy", "nan.npy: expected finite values, found 1 NaN/Inf")]


def test_bad_npy_files(tmp_path):
    for name, msg in _npy_cases(tmp_path):
        with pytest.raises(InputError, match=msg):
            load_npy(tmp_path / name)


# ---- fMRI arrays: constant, too large for float32, empty, wrong layout -----------------------------------------------
@pytest.mark.parametrize("arr, msg", [
    (np.zeros((2, 5, 16)), "expected varying fMRI values, found every value equal to 0.0"),
    (np.full((2, 5, 16), 1e300), "expected values that fit float32"),
    (np.zeros((2, 0, 16)), "expected fMRI values, found an empty array"),
    (np.zeros((5, 16)), r"expected shape \(segments, TRs, voxels\)"),
    (np.array([[["a"]]]), "expected a numeric array"),
], ids=["constant", "overflow", "empty", "2d", "strings"])
def test_bad_fmri_files(tmp_path, arr, msg):
    f = tmp_path / "fmri_train_subject1.npy"; np.save(f, arr)
    with pytest.raises(InputError, match=f"fmri_train_subject1.npy: {msg}"):
        _read_fmri(f)


# ---- the Wen layout: captions -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wen(tmp_path_factory):
    d = tmp_path_factory.mktemp("wen")
    save_wen_layout(load_world("smoke"), d)
    return d / "preprocessed"


def test_bytes_captions_are_decoded(wen, tmp_path):
    import shutil
    d = tmp_path / "preprocessed"; shutil.copytree(wen, d)
    text = np.load(d / "text_train_256_3hz.npy")
    np.save(d / "text_train_256_3hz.npy", np.char.encode(text, "utf-8"))
    got = read_wen_split(d, "train")["text"]
    assert got.dtype.kind == "U" and got.flat[0] == text.flat[0] and not got.flat[0].startswith("b'")
    np.save(d / "text_train_256_3hz.npy", np.full(text.shape, b"\xff\xfe", dtype="S2"))
    with pytest.raises(InputError, match="text_train_256_3hz.npy: expected UTF-8 captions"):
        read_wen_split(d, "train")


def test_bad_wen_files(wen, tmp_path):
    import shutil
    d = tmp_path / "preprocessed"; shutil.copytree(wen, d)
    np.save(d / "text_test_256_3hz.npy", np.zeros((1, 2, 3)))
    with pytest.raises(InputError, match="text_test_256_3hz.npy: expected a string array"):
        read_wen_split(d, "test")
    (d / "fmri_train_subject1.npy").unlink()
    with pytest.raises(InputError, match="fmri_train_subject1.npy"):
        read_wen_split(d, "train")


# ---- HCP files ---------------------------------------------------------------------------------------------------------
def _hcp(tmp_path, **arrays):
    sub = tmp_path / "npz" / "100000"; sub.mkdir(parents=True)
    np.savez(sub / "HCP_visual_voxel.npz", **arrays)
    return tmp_path / "npz", sub / "HCP_visual_voxel.npz"


def test_hcp_strings(tmp_path):
    folder, f = _hcp(tmp_path, **{k: np.array([["a", "b"]] * 20) for k in ("V1", "V2", "V3", "V4")})
    with pytest.raises(InputError, match=r"HCP_visual_voxel.npz\[V1\]: expected a numeric array"):
        load_hcp_npz(folder)


def test_hcp_zero_voxels(tmp_path):
    folder, _ = _hcp(tmp_path, **{k: np.zeros((20, 0)) for k in ("V1", "V2", "V3", "V4")})
    with pytest.raises(InputError, match="HCP_visual_voxel.npz: expected voxels"):
        load_hcp_npz(folder)


def test_hcp_missing_key_and_short(tmp_path):
    folder, _ = _hcp(tmp_path, V1=np.ones((20, 4)))
    with pytest.raises(InputError, match="HCP_visual_voxel.npz: expected keys"):
        load_hcp_npz(folder)
    with pytest.raises(InputError, match="sub.npz: expected at least 10 frames"):
        process_voxel_ts(np.ones((3, 4)), name="sub.npz")


def test_hcp_corrupt_member(tmp_path):
    folder, f = _hcp(tmp_path, **{k: np.random.default_rng(0).standard_normal((20, 4)) for k in ("V1", "V2", "V3", "V4")})
    data = bytearray(f.read_bytes())
    with zipfile.ZipFile(f) as z: off = z.getinfo("V2.npy").header_offset
    data[off + 100:off + 200] = b"\0" * 100; f.write_bytes(bytes(data))
    with pytest.raises(InputError, match="HCP_visual_voxel.npz"):
        load_hcp_npz(folder)


def test_hcp_missing_folder(tmp_path):
    with pytest.raises(InputError, match="nowhere: folder not found"):
        load_hcp_npz(tmp_path / "nowhere")


# ---- weights: the safetensors policy, truncated files, MAE weights ----------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return make_tiny_models(d)


def test_bin_only_clip_folder_is_refused(tiny_models, tmp_path):
    import shutil
    clip = tmp_path / "clip"; shutil.copytree(tiny_models["clip"], clip)
    (clip / "model.safetensors").rename(clip / "pytorch_model.bin")
    with pytest.raises(InputError, match=r"CLIP folder .*clip: expected .*model.safetensors.*pickled weights pytorch_model.bin are never read"):
        load_foundation_from(clip, tiny_models["sd"])


def test_truncated_safetensors_names_the_folder(tiny_models, tmp_path):
    import shutil
    clip = tmp_path / "clip"; shutil.copytree(tiny_models["clip"], clip)
    (clip / "model.safetensors").write_bytes((clip / "model.safetensors").read_bytes()[:100])
    with pytest.raises(InputError, match=r"clip: expected a readable CLIPModel folder"):
        load_foundation_from(clip, tiny_models["sd"])


def test_bin_only_sd_unet_is_refused(tiny_models, tmp_path):
    import shutil
    sd = tmp_path / "sd"; shutil.copytree(tiny_models["sd"], sd)
    (sd / "unet" / "diffusion_pytorch_model.safetensors").rename(sd / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(InputError, match=r"Stable Diffusion unet folder .*unet: expected .*diffusion_pytorch_model.safetensors"):
        load_foundation_from(tiny_models["clip"], sd)


def test_release_pickle_needing_more_than_tensors(tmp_path):
    torch.save({"w": torch.ones(2), "args": Path("x")}, tmp_path / "bad.bin")
    with pytest.raises(InputError, match="bad.bin: refused"):
        load_weights(tmp_path / "bad.bin")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00")
    with pytest.raises(InputError, match="broken.safetensors: expected a safetensors file"):
        load_weights(tmp_path / "broken.safetensors")


def test_mae_pretrained_path_file_folder_and_errors(tmp_path):
    cfg = load_preset("smoke"); m = build_mae(cfg, 304)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, tmp_path / "mae.safetensors")
    m.save_pretrained(tmp_path / "folder", safe_serialization=True)
    for src in (tmp_path / "mae.safetensors", tmp_path / "folder"):
        m2 = load_pretrained_mae(build_mae(cfg, 304), src)
        assert all(torch.equal(m.state_dict()[k], m2.state_dict()[k]) for k in m.state_dict())
    with pytest.raises(InputError, match="mae.pretrained_path .*mae.safetensors: expected the weights of this MAE"):
        load_pretrained_mae(build_mae(cfg, 320), tmp_path / "mae.safetensors")
    (tmp_path / "mae.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="mae.pretrained_path .*mae.bin: expected a .safetensors file or a save_pretrained folder"):
        load_pretrained_mae(m, tmp_path / "mae.bin")


# ---- clips, GIFs and windows --------------------------------------------------------------------------------------------
def test_bad_clip_inputs(tmp_path):
    with pytest.raises(InputError, match="nothing_here: expected a folder of clips"):
        read_clips(tmp_path / "nothing_here")
    with pytest.raises(InputError, match="gif: expected an even width"):
        split_release_gif(np.zeros((6, 20, 51, 3), np.uint8))
    with pytest.raises(InputError, match=r"gif: expected a \[GT \| pred\] grid"):
        split_release_gif(np.zeros((6, 3, 8, 3), np.uint8))
    np.save(tmp_path / "w.npy", np.ones((3, 2, 30), np.float32))
    with pytest.raises(InputError, match=r"w.npy: expected fMRI windows of shape \(N >= 1, window_size=2, num_voxels=32\)"):
        read_windows(tmp_path / "w.npy", 2, 32)
    np.save(tmp_path / "u.npy", np.ones((3, 2, 32), np.uint8).astype(np.complex64))
    with pytest.raises(InputError, match="u.npy: expected float fMRI windows"):
        read_windows(tmp_path / "u.npy", 2, 32)


# ---- stale results: cache keys and up-to-date checks know the data ---------------------------------------------------
def test_cache_keys_follow_the_data(tmp_path, monkeypatch):
    a, b = tmp_path / "data_a", tmp_path / "data_b"
    make_tiny_assets(a)
    import shutil; shutil.copytree(a, b)
    extra = b / "HCP" / "npz" / "100009"; shutil.copytree(b / "HCP" / "npz" / "100000", extra)  # a fourth subject
    cfg = load_preset("wen2018_smoke")
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MINDVIDEO_DATA", str(a)); out_a = pretrain_mae(cfg)
    monkeypatch.setenv("MINDVIDEO_DATA", str(b)); out_b = pretrain_mae(cfg)
    assert out_a != out_b and (out_a / "config.json").is_file() and (out_b / "config.json").is_file()
    assert len(json.loads((out_b.parent / "history.json").read_text())["num_voxels"]) == 4
    before = stage_dir(cfg, "mae", "data", "mae")
    f = b / "HCP" / "npz" / "100009" / "HCP_visual_voxel.npz"
    with np.load(f) as z: arrays = {k: z[k] * 2 for k in z.files}
    np.savez(f, **arrays)  # edited in place
    assert stage_dir(cfg, "mae", "data", "mae") != before and data_fingerprint(cfg) != ""


# ---- the runner: concurrent records, unwritable folders ----------------------------------------------------------------
_nb = write_notebook


@pytest.fixture
def project(tmp_path):
    (tmp_path / "nbs").mkdir(); (tmp_path / "mindvideo").mkdir()
    (tmp_path / "settings.ini").write_text((ROOT / "settings.ini").read_text())
    for name in ("01_a", "02_b"): _nb(tmp_path / "nbs" / f"{name}.ipynb", "import time; time.sleep(1)")
    return tmp_path


def test_two_runs_at_once_keep_every_record(project):
    errs = []
    def run(nb):
        try: reproduce("smoke", only=[nb], project=project, force=True)
        except Exception as e: errs.append(e)
    threads = [threading.Thread(target=run, args=(nb,)) for nb in ("01_a", "02_b")]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errs
    rec = json.loads((project / "runs" / "smoke" / "run.json").read_text())
    assert sorted(rec["notebooks"]) == ["01_a", "02_b"] and all(v["status"] == "ok" for v in rec["notebooks"].values())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_project_gives_one_line(project, capsys):
    os.chmod(project, 0o555)
    try: rc = main(["reproduce", "--preset", "smoke"])
    finally: os.chmod(project, 0o755)
    assert rc == 1


def test_unwritable_run_folder_gives_one_line(project, capsys, monkeypatch):
    (project / "runs").write_text("a file where the runs folder goes")
    monkeypatch.chdir(project)
    assert main(["reproduce", "--preset", "smoke"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs/smoke: expected a writable folder" in err[0], err
