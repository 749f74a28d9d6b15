"Tests of mindvideo.pipeline (guidance arithmetic, input checks, shapes, seeding, save/load), mindvideo.video (export, viewer) and mindvideo.reconstruct."
import json
import sys

import numpy as np
import pytest
import torch

import mindvideo.pipeline as mp
from mindvideo.core import ConfigError, InputError, load_preset
from mindvideo.mae import FMRIEncoder
from mindvideo.pipeline import MindVideoPipeline, guided_noise
import mindvideo.reconstruct as mr
from mindvideo.reconstruct import reconstruct
import mindvideo.video as mv
from mindvideo.video import save_gif, save_mp4, side_by_side
from mindvideo.testing import tiny_pipeline

W, V = 2, 32  # fMRI window and voxels of the tiny encoder


def _tiny_pipe(seed=0, attention="sparse_causal"):
    "Seeded tiny components: inflated 2-D UNet (sparse-causal attn1), AutoencoderKL, FMRIEncoder, DDIM (mindvideo.testing)."
    return tiny_pipeline(seed, attention)


@pytest.fixture(scope="module")
def pipe():
    return _tiny_pipe()


@pytest.fixture(scope="module")
def fmri():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, W, V, generator=g)


def _gen(s=0): return torch.Generator().manual_seed(s)


# -- guidance arithmetic -------------------------------------------------------------------------------------------
def test_guided_noise_hand_computed():
    neg = torch.tensor([[1.0, 2.0]]); cond = torch.tensor([[3.0, -1.0]])
    out = guided_noise(torch.cat([neg, cond]), 12.5)
    # 1 + 12.5 * (3 - 1) = 26 ; 2 + 12.5 * (-1 - 2) = -35.5
    torch.testing.assert_close(out, torch.tensor([[26.0, -35.5]]))
    torch.testing.assert_close(guided_noise(torch.cat([neg, cond]), 1.0), cond)
    torch.testing.assert_close(guided_noise(torch.cat([neg, cond]), 0.0), neg)


def test_one_batched_call_with_mean_fmri_negative(pipe, fmri, monkeypatch):
    "Adversarial guidance: one UNet call per step on [z, z] with [E(mean fMRI), E(fMRI)], combined as the paper."
    calls = []
    def fake(unet, latents, t, cond):
        calls.append((latents.clone(), cond.clone()))
        b = latents.shape[0] // 2  # negative half predicts 1, conditional half predicts 3
        return torch.cat([torch.ones_like(latents[:b]), 3 * torch.ones_like(latents[b:])])
    seen = []
    orig_step = pipe.scheduler.step
    def step(eps, t, latents, **kw):
        seen.append(eps.clone()); return orig_step(eps, t, latents, **kw)
    monkeypatch.setattr(mp, "_predict_noise", fake)
    monkeypatch.setattr(pipe.scheduler, "step", step)
    mean = fmri.mean(0)
    pipe(fmri, negative_fmri=mean, num_inference_steps=2, guidance_scale=12.5, generator=_gen(), output_type="latent")
    assert len(calls) == 2  # one call per step
    lat, cond = calls[0]
    assert lat.shape[0] == 4 and torch.equal(lat[:2], lat[2:])
    with torch.no_grad():
        torch.testing.assert_close(cond[:2], pipe.fmri_encoder(mean[None]).expand(2, -1, -1))
        torch.testing.assert_close(cond[2:], pipe.fmri_encoder(fmri))
    torch.testing.assert_close(seen[0], torch.full_like(seen[0], 26.0))


def test_classic_negative_is_zero_fmri(pipe):
    with torch.no_grad():
        neg = pipe.negative_embeds("classic", 3)
        torch.testing.assert_close(neg, pipe.fmri_encoder(torch.zeros(1, W, V)).expand(3, -1, -1))


def test_no_guidance_single_branch(pipe, fmri, monkeypatch):
    sizes = []
    orig = mp._predict_noise
    monkeypatch.setattr(mp, "_predict_noise", lambda u, x, t, c: (sizes.append(x.shape[0]), orig(u, x, t, c))[1])
    pipe(fmri, guidance="none", num_inference_steps=2, generator=_gen())
    pipe(fmri, negative_fmri=fmri.mean(0), guidance_scale=1.0, num_inference_steps=1, generator=_gen())  # s <= 1: off
    assert sizes == [2, 2, 2]


# -- check_inputs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, msg", [
    (dict(), "fmri / fmri_embeds: expected exactly one of them, got neither"),
    (dict(fmri="F", fmri_embeds=torch.zeros(2, 3, 16)), "got both"),
    (dict(fmri=torch.zeros(2, 1, V)), "fmri: expected a (B, w, V) window, (B, 2, 32) for this encoder, got shape (2, 1, 32)"),
    (dict(fmri="F", guidance="cfg"), "guidance: expected one of ('adversarial', 'classic', 'none'), got 'cfg'"),
    (dict(fmri="F", guidance_scale=-1.0), "guidance_scale: expected a finite number >= 0, got -1.0"),
    (dict(fmri="F", num_frames=0), "num_frames: expected an int >= 1, got 0"),
    (dict(fmri="F", num_inference_steps=2.5), "num_inference_steps: expected an int >= 1, got 2.5"),
    (dict(fmri="F", height=15), "height: expected a positive multiple of the VAE factor 2, got 15"),
    (dict(fmri="F", width=0), "width: expected a positive multiple of the VAE factor 2, got 0"),
    (dict(fmri="F", output_type="gif"), "output_type: expected one of ('np', 'pt', 'pil', 'latent'), got 'gif'"),
    (dict(fmri="F", negative_fmri=None), "negative_fmri: expected the split's mean fMRI window (dataset.uncond_fmri) for guidance='adversarial' with guidance_scale=12.5, got None"),
    (dict(fmri="F", negative_fmri=torch.zeros(W, V + 16)), "negative_fmri: expected shape (w, V) or (1|B, w, V) with (w, V) = (2, 32) and B = 2, got shape (2, 48)"),
    (dict(fmri="F", latents=torch.zeros(2, 4, 5, 8, 8)), "latents: expected shape (2, 4, 6, 8, 8), got shape (2, 4, 5, 8, 8)"),
    (dict(fmri="F", generator=[_gen()]), "generator: expected one torch.Generator or a list of 2, got a list of 1"),
])
def test_check_inputs_errors(pipe, fmri, kwargs, msg):
    kw = dict(negative_fmri=fmri.mean(0), num_inference_steps=1) | kwargs
    if isinstance(kw.get("fmri"), str): kw["fmri"] = fmri
    with pytest.raises(ValueError) as e: pipe(**kw)
    assert isinstance(e.value, InputError) and msg in str(e.value), str(e.value)


# -- shapes, frame counts, seeding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("num_frames", [6, 24])
def test_output_shapes(pipe, fmri, num_frames):
    out = pipe(fmri, negative_fmri=fmri.mean(0), num_frames=num_frames, num_inference_steps=2, generator=_gen())
    assert isinstance(out, mp.MindVideoPipelineOutput)
    assert out.frames.shape == (2, num_frames, 16, 16, 3) and out.frames.dtype == np.float32
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    pt = pipe(fmri, guidance="classic", num_frames=num_frames, num_inference_steps=1, output_type="pt", generator=_gen()).frames
    assert tuple(pt.shape) == (2, num_frames, 3, 16, 16)


def test_output_types_and_embeds(pipe, fmri):
    with torch.no_grad(): c, n = pipe.fmri_encoder(fmri), pipe.fmri_encoder(fmri.mean(0)[None])
    a = pipe(fmri, negative_fmri=fmri.mean(0), num_inference_steps=2, generator=_gen()).frames
    b = pipe(fmri_embeds=c, negative_fmri_embeds=n, num_inference_steps=2, generator=_gen()).frames
    np.testing.assert_allclose(a, b, atol=1e-6)
    pil = pipe(fmri, guidance="none", num_inference_steps=1, output_type="pil", height=32, width=32).frames
    assert len(pil) == 2 and len(pil[0]) == 6 and pil[0][0].size == (32, 32)
    frames, = pipe(fmri, guidance="none", num_inference_steps=1, return_dict=False)
    assert frames.shape == (2, 6, 16, 16, 3)


def test_same_seed_same_frames(pipe, fmri):
    kw = dict(negative_fmri=fmri.mean(0), num_inference_steps=3)
    a = pipe(fmri, generator=_gen(7), **kw).frames
    b = pipe(fmri, generator=_gen(7), **kw).frames
    c = pipe(fmri, generator=_gen(8), **kw).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


# -- fast sampling ---------------------------------------------------------------------------------------------------
def test_batched_float32_matches_one_clip_at_a_time(fmri):
    "Several clips per UNet call (the fast path, float32, channels-last, chunked decoding) = one clip per call."
    p = _tiny_pipe(); x = torch.cat([fmri, -fmri[:1]])  # 3 clips
    kw = dict(negative_fmri=x.mean(0), num_inference_steps=3)
    one = np.concatenate([p(x[k:k + 1], generator=[_gen(10 + k)], **kw).frames for k in range(3)])
    g = _gen(3); one_shared = np.concatenate([p(x[k:k + 1], generator=g, **kw).frames for k in range(3)])
    p.enable_fast_sampling(channels_last=True)
    batched = p(x, generator=[_gen(10 + k) for k in range(3)], decode_chunk_size=4, **kw).frames
    shared = p(x, generator=_gen(3), **kw).frames  # one generator: consumed clip by clip, as one clip per call does
    assert np.abs(batched - one).max() < 1e-5 and np.abs(shared - one_shared).max() < 1e-5
    assert np.abs(shared - one).max() > 1e-3  # the generators do matter


def test_enable_fast_sampling_half_precision_and_compile(fmri, monkeypatch):
    from diffusers.models.attention_processor import AttnProcessor2_0
    from mindvideo.attention import SparseCausalAttnProcessor
    p = _tiny_pipe()
    assert all(isinstance(v, (SparseCausalAttnProcessor, AttnProcessor2_0)) for v in p.unet.attn_processors.values())  # SDPA
    kw = dict(negative_fmri=fmri.mean(0), num_inference_steps=2, generator=_gen(1))
    ref = p(fmri, **kw).frames
    compiled = []  # tracing takes seconds: the test checks the wiring (Module.compile, in place), not dynamo
    monkeypatch.setattr(p.unet, "compile", lambda **kw: compiled.append(kw))
    p.enable_fast_sampling(dtype="bfloat16", channels_last=False, compile=dict(mode="max-autotune"))
    assert compiled == [dict(mode="max-autotune")]
    assert (p.unet.dtype, p.vae.dtype, p.fmri_encoder.dtype) == (torch.bfloat16, torch.bfloat16, torch.float32)
    out = p(fmri, output_type="latent", **{**kw, "generator": _gen(1)}).frames
    assert out.dtype == torch.float32  # the loop stays float32
    assert np.abs(p(fmri, **{**kw, "generator": _gen(1)}).frames - ref).max() < 0.2
    with pytest.raises(ValueError, match="dtype: expected None or one of"): p.enable_fast_sampling(dtype=torch.int8)
    with pytest.raises(ValueError, match="compile: expected a bool or a dict"): p.enable_fast_sampling(compile="yes")
    with pytest.raises(ValueError, match="decode_chunk_size: expected an int >= 1"): p(fmri, decode_chunk_size=0, **kw)


def test_sparse_causal_processors_follow_frame_count(pipe, fmri):
    from mindvideo.attention import SparseCausalAttnProcessor
    pipe(fmri, guidance="none", num_frames=24, num_inference_steps=1)
    procs = [p for p in pipe.unet.attn_processors.values() if isinstance(p, SparseCausalAttnProcessor)]
    assert procs and all(p.num_frames == 24 and p.pattern == "sparse_causal" for p in procs)


# -- save / load -----------------------------------------------------------------------------------------------------
def test_save_load_round_trip(pipe, fmri, tmp_path):
    from mindvideo.attention import SparseCausalAttnProcessor
    pipe.save_pretrained(tmp_path/"p")
    idx = json.loads((tmp_path/"p"/"model_index.json").read_text())
    assert idx["fmri_encoder"] == ["mindvideo.mae", "FMRIEncoder"] and idx["vae_scale"] == 0.5
    assert (tmp_path/"p"/"unet"/"diffusion_pytorch_model.safetensors").is_file()
    p2 = MindVideoPipeline.from_pretrained(tmp_path/"p"); p2.set_progress_bar_config(disable=True)
    assert isinstance(p2.fmri_encoder, FMRIEncoder) and p2.latent_scale == 0.5 and p2.config.attention == "sparse_causal"
    assert any(isinstance(p, SparseCausalAttnProcessor) for p in p2.unet.attn_processors.values())
    kw = dict(negative_fmri=fmri.mean(0), num_inference_steps=3)
    np.testing.assert_allclose(pipe(fmri, generator=_gen(3), **kw).frames, p2(fmri, generator=_gen(3), **kw).frames, atol=1e-5)


# -- export ----------------------------------------------------------------------------------------------------------
def test_export_gif_mp4(tmp_path):
    import imageio.v3 as iio
    gt = np.random.default_rng(0).random((6, 15, 15, 3)).astype(np.float32)
    clip = side_by_side(gt, gt)
    assert clip.shape == (6, 15, 32, 3) and clip.dtype == np.uint8
    g = save_gif(clip, tmp_path/"c.gif", fps=3, scale=2)
    assert iio.imread(g).shape == (6, 30, 64, 3)
    m = save_mp4(clip, tmp_path/"c.mp4", fps=6, scale=1)  # odd height: padded to even
    assert m.stat().st_size > 0 and iio.imread(m).shape[0] == 6
    with pytest.raises(InputError, match="frames: expected frames"): save_gif(np.zeros((6, 4, 4)), tmp_path/"x.gif")


def test_save_mp4_names_a_missing_encoder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as on a machine without imageio-ffmpeg
    with pytest.raises(ConfigError, match=r"imageio-ffmpeg.*pip install imageio-ffmpeg"):
        save_mp4(np.zeros((6, 8, 8, 3), np.uint8), tmp_path/"c.mp4")
    assert not (tmp_path/"c.mp4").exists()


# -- reconstruct (with stand-in dataset and pipeline) -----------------------------------------------------------------
class _DS:
    "Stand-in for mindvideo.data.FMRIVideoDataset (the contract's attributes only)."
    def __init__(self, n=5):
        g = torch.Generator().manual_seed(0)
        self.fmri = torch.randn(n, W, V, generator=g)
        self.videos = np.random.default_rng(0).integers(0, 256, (n, 6, 16, 16, 3), dtype=np.uint8)
        self.labels = np.arange(n) % 3; self.captions = [f"clip {i}" for i in range(n)]
        self.uncond_fmri = self.fmri.reshape(-1, V).mean(0).repeat(W, 1)
    def __len__(self): return len(self.fmri)
    def __getitem__(self, i): return dict(fmri=self.fmri[i], index=i)


def test_reconstruct_cached_and_batch_independent(pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path))
    cfg = load_preset("smoke", {"guidance.num_inference_steps": 2})
    ds = _DS()
    r1 = reconstruct(cfg, max_samples=4, pipe=pipe, dataset=ds, batch_size=1)
    assert r1["pred"].shape == (4, 6, 16, 16, 3) and r1["pred"].dtype == np.uint8
    np.testing.assert_array_equal(r1["index"], [0, 1, 3, 4])
    np.testing.assert_array_equal(r1["gt"], ds.videos[[0, 1, 3, 4]])
    assert r1["captions"] == ["clip 0", "clip 1", "clip 3", "clip 4"]
    files = list(tmp_path.rglob("*.npz")); assert len(files) == 1 and "adversarial_s12.5" in files[0].name
    r2 = reconstruct(cfg, max_samples=4, pipe=None, dataset=ds)  # cached: no pipeline needed
    np.testing.assert_array_equal(r1["pred"], r2["pred"])
    files[0].unlink()
    r3 = reconstruct(cfg, max_samples=4, pipe=pipe, dataset=ds, batch_size=3)  # batching does not change the noise
    assert np.abs(r1["pred"].astype(int) - r3["pred"].astype(int)).max() <= 1
    r4 = reconstruct(cfg, max_samples=4, pipe=pipe, dataset=ds, guidance="classic", guidance_scale=3)
    assert len(list(tmp_path.rglob("*.npz"))) == 2 and not np.array_equal(r4["pred"], r1["pred"])
    with pytest.raises(InputError, match="guidance: expected one of"): reconstruct(cfg, guidance="cfg", dataset=ds)
    every = reconstruct(cfg, max_samples=0, pipe=pipe, dataset=ds)  # item k gets the k-th draw: a subset's clips are the whole set's
    np.testing.assert_array_equal(every["index"], np.arange(5))
    assert np.abs(every["pred"][[0, 1, 3, 4]].astype(int) - r1["pred"].astype(int)).max() <= 1
    r5 = reconstruct(cfg, max_samples=2, pipe=None, dataset=ds)  # not sampled: sliced from the whole split's file
    np.testing.assert_array_equal(r5["pred"], every["pred"][r5["index"]]); assert r5["captions"] == [f"clip {i}" for i in r5["index"]]


def test_item_noise_is_per_item():
    a = mr.item_noise((1, 2, 3, 4, 4), [0, 1, 2, 3], seed=7); b = mr.item_noise((1, 2, 3, 4, 4), [3, 1], seed=7)
    assert b.shape == (2, 2, 3, 4, 4) and torch.equal(b, a[[3, 1]])
    assert mr.item_noise((1, 2, 3, 4, 4), [], seed=7).shape == (0, 2, 3, 4, 4)


def test_video_viewer_builds(pipe):
    ipw = pytest.importorskip("ipywidgets")
    ds = _DS(3)
    w = mv.video_viewer(pipe, ds, num_inference_steps=1)
    assert isinstance(w, ipw.VBox)
    imgs = [c for c in w.children[2].children for c in c.children if isinstance(c, ipw.Image)]
    assert len(imgs) == 2 and all(len(i.value) > 0 for i in imgs)


# -- scheduler, scoring, figures --------------------------------------------------------------------------------------
def test_make_scheduler_release_settings():
    s = mr.make_scheduler({"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "clip_sample": True, "steps_offset": 0})
    assert type(s).__name__ == "DDIMScheduler" and s.config.steps_offset == 1 and s.config.clip_sample is False
    assert type(mr.make_scheduler({}, "dpm")).__name__ == "DPMSolverMultistepScheduler"
    with pytest.raises(ValueError, match="guidance.scheduler: expected one of"): mr.make_scheduler({}, "euler")


def test_score_clips_and_grid():
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    gt = np.random.default_rng(0).integers(0, 256, (3, 6, 16, 16, 3), dtype=np.uint8)
    sc = mr.score_clips(gt, gt)
    np.testing.assert_allclose(sc["ssim"], 1.0)
    assert mr.score_clips(255 - gt, gt)["ssim"].max() < 0.5
    with pytest.raises(InputError, match="pred, gt: expected equal shapes"): mr.score_clips(gt[:2], gt)
    fig = mr.recon_grid(gt, 255 - gt, ["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4; plt.close(fig)


def test_attention_slicing_keeps_sparse_causal_frames(fmri):
    from mindvideo.attention import SparseCausalAttnProcessor
    p = _tiny_pipe()
    kw = dict(fmri=fmri, negative_fmri=fmri.mean(0), num_inference_steps=2, output_type="np")
    ref = p(generator=_gen(1), **kw).frames
    n_sparse = sum(isinstance(v, SparseCausalAttnProcessor) for v in p.unet.attn_processors.values())
    p.enable_attention_slicing()
    assert sum(isinstance(v, SparseCausalAttnProcessor) for v in p.unet.attn_processors.values()) == n_sparse > 0
    np.testing.assert_allclose(p(generator=_gen(1), **kw).frames, ref, atol=1e-5)
    p.disable_attention_slicing()
    assert sum(isinstance(v, SparseCausalAttnProcessor) for v in p.unet.attn_processors.values()) == n_sparse
    with pytest.raises(ValueError, match="slice_size"):
        p.enable_attention_slicing(0)
