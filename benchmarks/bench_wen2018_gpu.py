"""Benchmark: the wen2018 code path at full size with random weights (the compute is the same as with real weights).

SD-1.5-size UNet2DConditionModel inflated to video (sparse-causal attention + temporal layers), SD-1.5-size VAE, and
the paper-size fMRI encoder (V=3744, embed 1024, depth 24, window 2, 77x768 tokens), wired into MindVideoPipeline.

    python benchmarks/bench_wen2018_gpu.py --device cuda            # needs a GPU with ~40 GB for the 24-frame run

Prints: sampling time per clip (256x256, adversarial guidance) at --steps steps, peak GPU memory at 6 and 24 frames,
and co-training throughput (clips/s, fp16/bf16 autocast, gradient checkpointing).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from mindvideo.core import load_preset
from mindvideo.inflate import CoTrainer, inflate_unet, set_trainable
from mindvideo.mae import FMRIEncoder
from mindvideo.pipeline import MindVideoPipeline

V = 3744  # 3731 voxels (spec §1) wrap-padded to a multiple of 16


def build(device, dtype):
    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(sample_size=32, cross_attention_dim=768, attention_head_dim=8,
                                  block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=256)
    unet = inflate_unet(unet2d, load_preset("wen2018").diffusion)
    enc = FMRIEncoder(num_voxels=V, window_size=2, out_tokens=77, out_dim=768, mlp_ratio=1.0)
    return unet.to(device, dtype), vae.to(device, dtype), enc.to(device, dtype)


def sync(device):
    if device.startswith("cuda"): torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    ap.add_argument("--steps", type=int, default=50, help="sampling steps (release: 200; time scales linearly)")
    ap.add_argument("--frames", type=int, nargs="+", default=[6, 24])
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    dev, dtype = a.device, getattr(torch, a.dtype)
    cuda = dev.startswith("cuda")
    unet, vae, enc = build(dev, dtype)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = MindVideoPipeline(vae=vae, unet=unet, fmri_encoder=enc, scheduler=sched, vae_scale=0.18215)
    pipe.set_progress_bar_config(disable=True)
    res = {"device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": a.dtype, "steps": a.steps, "sample": {}, "train": {}}
    fmri = torch.randn(1, 2, V); neg = torch.zeros(2, V)
    for F in a.frames:
        pipe(fmri=fmri, negative_fmri=neg, num_frames=F, height=256, width=256, num_inference_steps=2, output_type="np")  # warm-up
        if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        sync(dev); t = time.perf_counter()
        out = pipe(fmri=fmri, negative_fmri=neg, num_frames=F, height=256, width=256, num_inference_steps=a.steps,
                   guidance_scale=12.5, generator=torch.Generator().manual_seed(3407), output_type="np").frames
        sync(dev); dt = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        res["sample"][F] = dict(seconds_per_clip=dt, seconds_per_step=dt / a.steps, peak_gib=peak, shape=list(out.shape))
        print(f"sample  F={F:3d}: {dt:7.2f} s/clip at {a.steps} steps ({dt / a.steps * 1000:.0f} ms/step), peak {peak:.1f} GiB", flush=True)
    # co-training: encoder + UNet attention/temporal layers, autocast, gradient checkpointing
    unet, _, enc = build(dev, torch.float32)
    set_trainable(unet); unet.enable_gradient_checkpointing()
    trainer = CoTrainer(unet, enc, DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
                        uncond_fmri=torch.zeros(2, V)).to(dev)
    params = [p for p in trainer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    scaler = torch.amp.GradScaler(enabled=cuda and dtype == torch.float16)
    for F in [6]:
        batch = {"fmri": torch.randn(a.batch, 2, V, device=dev), "latents": torch.randn(a.batch, 4, F, 32, 32, device=dev)}
        if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(a.train_steps + 1):
            sync(dev); t = time.perf_counter()
            with torch.autocast(dev.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
                loss = trainer(batch)
            scaler.scale(loss).backward(); scaler.step(opt); scaler.update(); opt.zero_grad(set_to_none=True)
            sync(dev); times.append(time.perf_counter() - t)
        dt = sum(times[1:]) / a.train_steps
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        res["train"][F] = dict(seconds_per_step=dt, clips_per_s=a.batch / dt, peak_gib=peak, batch=a.batch,
                               trainable_params=sum(p.numel() for p in params))
        print(f"cotrain F={F:3d}: {dt:6.3f} s/step, {a.batch / dt:.2f} clips/s (batch {a.batch}), peak {peak:.1f} GiB, "
              f"{sum(p.numel() for p in params) / 1e6:.0f}M trainable params", flush=True)
    r = res["sample"]
    if len(r) > 1:
        f0, f1 = sorted(r)[0], sorted(r)[-1]
        print(f"ratios {f1}/{f0} frames: time x{r[f1]['seconds_per_clip'] / r[f0]['seconds_per_clip']:.2f}, "
              f"peak memory x{r[f1]['peak_gib'] / r[f0]['peak_gib']:.2f} (frames x{f1 / f0:.0f})")
    if a.json:
        with open(a.json, "w") as fh: json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
