import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from mindvideo.core import ConfigError, InputError, load_preset
from mindvideo.foundation import (Foundation, decode_video_latents, encode_images, encode_text, encode_video_latents, foundation_dir,
                                  load_foundation, load_foundation_from, make_clip, make_scheduler, make_unet, make_vae, world_frames)
from mindvideo.sanity import sample_images
from mindvideo.tokenizer import build_tokenizer

CAPTIONS = ["a red square on a dark background", "a blue ball", "a green square", "a blue ball"]


def _tiny_folders(root, width=32):
    "A tiny CLIP folder and a tiny SD folder (vae/, unet/, scheduler/, tokenizer/) in the real layouts."
    fc = load_preset("smoke", {"foundation.clip_width": width, "encoder.out_dim": width}).foundation
    torch.manual_seed(0)
    tok = build_tokenizer(CAPTIONS, root / "sd" / "tokenizer", max_length=fc.text_max_len)
    clip = make_clip(fc, tok)
    clip.save_pretrained(root / "clip")
    proc = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(root / "clip")
    make_vae(fc, 16).save_pretrained(root / "sd" / "vae")
    make_unet(fc, 8, width).save_pretrained(root / "sd" / "unet")
    make_scheduler().save_pretrained(root / "sd" / "scheduler")
    return root / "clip", root / "sd"


def test_tokenizer_words_are_single_tokens(tmp_path):
    tok = build_tokenizer(CAPTIONS, tmp_path, max_length=10)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    ids = again(["a blue ball"], padding="max_length", max_length=10).input_ids[0]
    assert again.convert_ids_to_tokens(ids)[:5] == ["<|startoftext|>", "a</w>", "blue</w>", "ball</w>", "<|endoftext|>"]
    assert len(ids) == 10 and tok.eos_token_id == len(tok) - 1
    assert tok.unk_token_id not in tok("an unseen zebra").input_ids[1:-1]


def test_real_path_loads_tiny_folders(tmp_path):
    clip_path, sd_path = _tiny_folders(tmp_path)
    cfg = load_preset("wen2018", {"foundation.clip_path": str(clip_path), "foundation.sd_path": str(sd_path), "encoder.out_dim": 32})
    fd = load_foundation(cfg)
    assert isinstance(fd.clip, CLIPModel) and isinstance(fd.vae, AutoencoderKL)
    assert isinstance(fd.unet, UNet2DConditionModel) and isinstance(fd.scheduler, DDPMScheduler)
    assert fd.unet.config.cross_attention_dim == 32 and fd.image_size == 16
    h, e = encode_text(fd, ["a blue ball", ""])
    assert h.shape == (2, 12, 32) and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert encode_images(fd, torch.rand(3, 3, 24, 24) * 2 - 1).shape == (3, 32)
    z = encode_video_latents(fd, torch.rand(2, 3, 3, 16, 16) * 2 - 1)
    assert z.shape == (2, 4, 3, 8, 8)
    v = decode_video_latents(fd, z)
    assert v.shape == (2, 3, 3, 16, 16) and v.min() >= -1 and v.max() <= 1


def test_default_folders_under_data_dir(tmp_path):
    clip_path, sd_path = _tiny_folders(tmp_path)
    clip_path.rename(tmp_path / "clip-vit-large-patch14"); sd_path.rename(tmp_path / "stable-diffusion-v1-5")
    fd = load_foundation(load_preset("wen2018", {"data.data_dir": str(tmp_path), "encoder.out_dim": 32}))
    assert "clip-vit-large-patch14" in fd.path


def test_missing_folder_names_expected_files(tmp_path):
    clip_path, sd_path = _tiny_folders(tmp_path)
    for f in (sd_path / "unet").iterdir(): f.unlink()
    with pytest.raises(InputError, match=r"unet folder .*diffusion_pytorch_model.safetensors.*missing config.json"):
        load_foundation_from(clip_path, sd_path)
    with pytest.raises(InputError, match=r"CLIP folder .*nowhere.*expected the files config.json"):
        load_foundation_from(tmp_path / "nowhere", sd_path)
    cfg = load_preset("wen2018", {"data.data_dir": str(tmp_path / "empty"), "encoder.out_dim": 32})
    with pytest.raises(InputError, match="clip-vit-large-patch14"):
        load_foundation(cfg)


def test_width_mismatch_is_a_config_error(tmp_path):
    clip_path, sd_path = _tiny_folders(tmp_path)
    cfg = load_preset("wen2018", {"foundation.clip_path": str(clip_path), "foundation.sd_path": str(sd_path)})
    with pytest.raises(ConfigError, match="encoder.out_dim: expected the CLIP text width 32"):
        load_foundation(cfg)


def test_sampling_is_seeded(tmp_path):
    fd = load_foundation_from(*_tiny_folders(tmp_path))
    a = sample_images(fd, ["a blue ball"] * 2, steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(1))
    b = sample_images(fd, ["a blue ball"] * 2, steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)


def _fake_world(cfg, seed=0):
    "A tiny world in the `World` layout: category k = a bright square of colour k."
    from types import SimpleNamespace
    d = cfg.data; rng = np.random.default_rng(seed); H = d.frame_size; K = 3
    def split(S, T=4):
        lab = rng.integers(0, K, (S, T))
        vid = np.zeros((S, T, d.frames_per_tr, H, H, 3), np.uint8)
        for idx in np.ndindex(S, T): vid[idx][:, 4:12, 4:12, lab[idx]] = 255
        txt = np.array([[[f"a {['red', 'green', 'blue'][l]} square"] * d.frames_per_tr for l in row] for row in lab])
        return vid, txt, lab
    (vtr, ttr, ltr), (vte, tte, lte) = split(2), split(1)
    return SimpleNamespace(video_train=vtr, text_train=ttr, label_train=ltr, video_test=vte, text_test=tte,
                           label_test=lte, categories=["red square", "green square", "blue square"])


def test_synthetic_standins_trained_once_and_cached(tmp_cache, monkeypatch):
    import mindvideo.foundation as fdn
    monkeypatch.setattr(fdn, "_load_world", _fake_world)
    ov = {"foundation.clip_steps": 2, "foundation.vae_steps": 2, "foundation.unet_steps": 2}
    cfg = load_preset("smoke", ov)
    fd = load_foundation(cfg, seed=0)
    out = foundation_dir(cfg, seed=0)
    for sub in ("clip", "tokenizer", "vae", "unet", "scheduler"): assert (out / sub).is_dir(), sub
    assert not (out.parent / f"{out.name}.work").exists()
    stamp = (out / "training.json").stat().st_mtime_ns
    fd2 = load_foundation(cfg, seed=0)
    assert (out / "training.json").stat().st_mtime_ns == stamp
    for a, b in zip(fd.unet.parameters(), fd2.unet.parameters()): assert torch.equal(a, b)
    assert fd.unet.config.cross_attention_dim == cfg.encoder.out_dim == fd.text_width
    assert fd.vae_scale > 0 and fd.vae.config.scaling_factor == fd.vae_scale
    F = cfg.data.frame_size
    assert fd.unet.config.sample_size == F // 2  # the stand-in VAE downsamples by 2
    x = sample_images(fd, ["", "x"], steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, F, F)
    tok = fd.tokenizer.convert_ids_to_tokens(fd.tokenizer("a green square").input_ids)
    assert tok[1:4] == ["a</w>", "green</w>", "square</w>"]


def test_category_prompts_and_zero_shot_shapes(tmp_path):
    from mindvideo.sanity import category_caption_sets, category_prompts, zero_shot_accuracy
    cfg = load_preset("smoke")
    w = _fake_world(cfg)
    assert category_prompts(w) == ["a red square", "a green square", "a blue square"]
    fd = load_foundation_from(*_tiny_folders(tmp_path))
    fr, _, lab = world_frames(w, "test")
    acc, conf = zero_shot_accuracy(fd, fr, lab, category_caption_sets(w))
    assert 0 <= acc <= 1 and conf.shape == (3, 3) and conf.sum() == len(fr)


def test_world_frames_flattens_per_frame():
    from types import SimpleNamespace
    w = SimpleNamespace(video_train=np.zeros((2, 3, 6, 8, 8, 3), np.uint8), text_train=np.full((2, 3, 6), "cap"),
                        label_train=np.arange(6).reshape(2, 3))
    fr, cap, lab = world_frames(w, "train")
    assert fr.shape == (36, 8, 8, 3) and cap.shape == (36,) and list(lab[:7]) == [0] * 6 + [1]
    with pytest.raises(InputError, match="split"):
        world_frames(w, "val")


def test_loads_the_wen2018_tiny_assets(tmp_path):
    "The real path on the toy SD/CLIP folders of `mindvideo.wen2018` (PNDM scheduler config, SD pipeline layout)."
    wen = pytest.importorskip("mindvideo.wen2018")
    wen.make_tiny_models(tmp_path, frame_size=16, cross_attention_dim=32)
    fd = load_foundation(load_preset("wen2018_smoke", {"data.data_dir": str(tmp_path)}))
    assert isinstance(fd.scheduler, DDPMScheduler) and fd.vae_scale == pytest.approx(0.18215)
    assert sample_images(fd, ["a red disk"], steps=2, generator=torch.Generator().manual_seed(0)).shape == (1, 3, 16, 16)


# ---- the shipped stand-ins of quick ---------------------------------------------------------------------------------
def _shipped_quick():
    from mindvideo.foundation import shipped_standins
    d = shipped_standins(load_preset("quick"))  # raises if a file no longer has its recorded hash
    assert d is not None and d.name == "quick", "mindvideo/standins/quick: expected the shipped stand-ins of quick"
    return d


def test_shipped_standins_match_their_provenance():
    import json
    from mindvideo.core import ABLATIONS
    from mindvideo.foundation import shipped_standins, standin_key
    d = _shipped_quick()
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["preset"] == "quick" and prov["seed"] == 0 and prov["key"] == standin_key(load_preset("quick"))
    assert "mindvideo ship-standins --preset quick --seed 0" in prov["command"] and prov["commit"] not in ("", "unknown")
    assert not prov["commit"].endswith("-dirty"), "the shipped stand-ins must come from committed code"
    assert all(f.endswith((".json", ".txt")) or f.endswith(".safetensors") for f in prov["files"])  # no pickles
    assert sum((d / f).stat().st_size for f in prov["files"]) < 20e6
    for abl in ABLATIONS: assert shipped_standins(load_preset(f"quick+{abl}")) == d  # the ablations share them
    assert shipped_standins(load_preset("quick", {"foundation.seed": 1})) is None  # another seed trains its own
    assert shipped_standins(load_preset("quick", {"foundation.retrain": True})) is None


@pytest.mark.skipif(not __import__("os").environ.get("MINDVIDEO_SLOW_TESTS"),
                    reason="retrains quick's stand-ins, about 15 minutes on one core; set MINDVIDEO_SLOW_TESTS=1")
def test_shipped_standins_are_what_their_command_makes(tmp_path):
    "The recorded command, run again, writes the shipped files byte for byte (training.json: timings aside)."
    import json, os, subprocess, sys
    d = _shipped_quick()
    prov = json.loads((d / "provenance.json").read_text())
    env = dict(os.environ, MINDVIDEO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS=str(prov["environment"]["torch_threads"]))
    subprocess.run([sys.executable, "-m", "mindvideo", "ship-standins", "--preset", "quick", "--seed", "0", "--out", str(tmp_path / "out")],
                   env=env, check=True)
    new = json.loads((tmp_path / "out" / "provenance.json").read_text())["files"]
    assert sorted(new) == sorted(prov["files"])
    differ = [f for f in prov["files"] if f != "training.json" and new[f] != prov["files"][f]]
    assert not differ, f"files that the command no longer makes byte for byte: {differ}"
    strip = lambda t: {k: ({kk: vv for kk, vv in v.items() if kk != "seconds"} if isinstance(v, dict) else v)
                       for k, v in json.loads(t).items() if k != "data_seconds"}
    assert strip((tmp_path / "out" / "training.json").read_text()) == strip((d / "training.json").read_text())
