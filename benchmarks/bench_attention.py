"""Benchmark: sparse-causal vs full spatio-temporal attention in the inflated video UNet (mindvideo.inflate).

Time and peak memory of one training step (forward + backward, batch 1, trainable = attention + temporal layers) and
of one sampling step (forward without gradients, batch 2 = guidance's negative + positive), for 6, 12, 24, 48 frames.

    python benchmarks/bench_attention.py                       # CPU, quick-preset stand-in UNet (16x16 latents)
    python benchmarks/bench_attention.py --device cuda --size sd15   # SD-1.5-size UNet, random weights, 32x32 latents
    python benchmarks/bench_attention.py --sdpa math                # naive attention kernel (attention matrix in memory)

Peak memory: CUDA `torch.cuda.max_memory_allocated` (minus the memory held before the step: weights, gradients);
CPU: the torch profiler's allocation events (live tensor bytes allocated during the step). Ratios printed:
time and memory per frame relative to 6 frames (1.0 = linear growth), and full / sparse-causal at each frame count.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from mindvideo.core import load_preset
from mindvideo.inflate import inflate_unet, predict_noise, set_trainable


def make_unet2d(size:str)->tuple[UNet2DConditionModel, int, int]:
    "A randomly initialised 2D UNet: (unet, latent size, cross-attention width)."
    torch.manual_seed(0)
    if size == "sd15":  # SD v1-5's UNet config (random weights), 256x256 frames -> 32x32 latents
        return UNet2DConditionModel(sample_size=32, cross_attention_dim=768, attention_head_dim=8,
                                    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2), 32, 768
    cfg = load_preset(size)  # the synthetic stand-in of that preset (mindvideo.foundation.make_unet's layout)
    fc = cfg.foundation; n = len(fc.unet_channels)
    latent = cfg.data.frame_size // 2 ** (len(fc.vae_channels) - 1)
    groups = math.gcd(*fc.unet_channels, 32)
    u = UNet2DConditionModel(sample_size=latent, in_channels=fc.latent_channels, out_channels=fc.latent_channels,
                             down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
                             up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
                             block_out_channels=tuple(fc.unet_channels), layers_per_block=fc.unet_layers,
                             attention_head_dim=fc.unet_heads, cross_attention_dim=cfg.encoder.out_dim, norm_num_groups=groups)
    return u, latent, cfg.encoder.out_dim


def _sync(device):
    if device.startswith("cuda"): torch.cuda.synchronize()


def _cpu_peak(fn)->int:
    "Peak bytes of live tensors allocated while `fn` runs (torch profiler allocation events)."
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    ev = sorted(((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage), key=lambda x: x[0])
    cur = pk = 0
    for _, m in ev:
        cur += m; pk = max(pk, cur)
    return pk


def measure(unet, latent:int, cross:int, nf:int, mode:str, device:str, repeats:int, dtype=torch.float32)->dict:
    "Median time (s) and peak memory (bytes) of one training or sampling step with `nf` frames."
    B = 1 if mode == "train" else 2
    lat = torch.randn(B, unet.config.in_channels, nf, latent, latent, device=device, dtype=dtype)
    cond = torch.randn(B, 8 if cross < 256 else 77, cross, device=device, dtype=dtype)
    t = torch.full((B,), 500, device=device)

    def step():
        if mode == "train":
            loss = predict_noise(unet, lat, t, cond).float().pow(2).mean()
            loss.backward()
            unet.zero_grad(set_to_none=False)  # keep the gradient buffers: they count as held memory, not step memory
        else:
            with torch.no_grad(): predict_noise(unet, lat, t, cond)
        _sync(device)

    step()  # warm-up (allocates gradient buffers once)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    if device.startswith("cuda"):
        torch.cuda.empty_cache(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
        step(); mem = torch.cuda.max_memory_allocated() - base
    else:
        mem = _cpu_peak(step)
    return {"time_s": statistics.median(times), "peak_bytes": int(mem)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--size", default="quick", choices=("smoke", "quick", "sd15"), help="UNet size")
    ap.add_argument("--frames", type=int, nargs="+", default=[6, 12, 24, 48])
    ap.add_argument("--patterns", nargs="+", default=["sparse_causal", "full"])
    ap.add_argument("--modes", nargs="+", default=["train", "sample"], choices=("train", "sample"))
    ap.add_argument("--repeats", type=int, default=2, help="timed repetitions per setting (median)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--sdpa", default="auto", choices=("auto", "math"),
                    help="attention kernel: 'auto' (flash / memory-efficient where available: memory linear in the sequence) "
                         "or 'math' (materialises the attention matrix, as a naive implementation does)")
    ap.add_argument("--json", default="", help="write the results to this JSON file")
    a = ap.parse_args(argv)
    dtype = getattr(torch, a.dtype)
    from diffusers.utils import logging as dlog
    dlog.set_verbosity_error()  # the dtype notice of UNetMotionModel.to()
    u2, latent, cross = make_unet2d(a.size)
    from contextlib import nullcontext
    from torch.nn.attention import SDPBackend, sdpa_kernel
    kernel = (lambda: sdpa_kernel(SDPBackend.MATH)) if a.sdpa == "math" else nullcontext
    print(f"# {a.size} UNet on {a.device} ({a.dtype}, sdpa {a.sdpa}), {latent}x{latent} latents, torch {torch.__version__}, threads {torch.get_num_threads()}")
    results = []
    for pattern in a.patterns:
        unet = inflate_unet(u2, load_preset("smoke", {"diffusion.attention": pattern}).diffusion).to(a.device, dtype)
        set_trainable(unet, True)
        if a.gradient_checkpointing: unet.enable_gradient_checkpointing()
        for mode in a.modes:
            unet.train(mode == "train")
            for nf in a.frames:
                try:
                    with kernel():
                        r = measure(unet, latent, cross, nf, mode, a.device, a.repeats, dtype)
                except torch.OutOfMemoryError:
                    r = {"time_s": float("nan"), "peak_bytes": -1}
                    if a.device.startswith("cuda"): torch.cuda.empty_cache()
                r |= dict(pattern=pattern, mode=mode, frames=nf); results.append(r)
                print(f"{pattern:>13} {mode:>6} F={nf:>3}: {r['time_s']*1e3:9.1f} ms  peak {r['peak_bytes']/2**20:9.1f} MiB", flush=True)
        del unet
        if a.device.startswith("cuda"): torch.cuda.empty_cache()
    print_ratios(results, a.frames)
    if a.json:
        args = {k: v for k, v in vars(a).items() if k != "json"}  # the settings, not where this machine wrote the file
        Path(a.json).write_text(json.dumps({"args": args, "torch": torch.__version__, "results": results}, indent=2))
    return results


def print_ratios(results:list, frames:list):
    "Per-frame cost relative to the first frame count (1.0 = linear), and full / sparse-causal."
    get = {(r["pattern"], r["mode"], r["frames"]): r for r in results}
    f0 = frames[0]
    print(f"\n# per-frame cost relative to F={f0} (1.0 = linear growth)")
    for (pat, mode) in sorted({(r["pattern"], r["mode"]) for r in results}):
        base = get[(pat, mode, f0)]
        row = []
        for nf in frames:
            r = get[(pat, mode, nf)]
            tr = (r["time_s"] / nf) / (base["time_s"] / f0)
            mr = (r["peak_bytes"] / nf) / (base["peak_bytes"] / f0) if base["peak_bytes"] > 0 and r["peak_bytes"] > 0 else float("nan")
            row.append(f"F={nf}: time {tr:5.2f} mem {mr:5.2f}")
        print(f"{pat:>13} {mode:>6} | " + " | ".join(row))
    if any(r["pattern"] == "full" for r in results) and any(r["pattern"] == "sparse_causal" for r in results):
        print("\n# full / sparse_causal")
        for mode in sorted({r["mode"] for r in results}):
            row = []
            for nf in frames:
                s, f = get.get(("sparse_causal", mode, nf)), get.get(("full", mode, nf))
                if s and f and s["peak_bytes"] > 0 and f["peak_bytes"] > 0:
                    row.append(f"F={nf}: time {f['time_s']/s['time_s']:5.2f} mem {f['peak_bytes']/s['peak_bytes']:5.2f}")
                else:
                    row.append(f"F={nf}: n/a (OOM)")
            print(f"{mode:>6} | " + " | ".join(row))


if __name__ == "__main__":
    main()
