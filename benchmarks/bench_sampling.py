"""Benchmark: sampling the authors' model as the release does against the fast sampling path, in one run on one device.

The release's video UNet (`mindvideo.inflate.MindVideoUNet3DConditionModel`), a VAE and an fMRI encoder with random weights
(the compute is the same as with real weights), in `MindVideoPipeline`, with adversarial guidance (s = 12.5, DDIM):

  (a) release: float32, one clip per pipeline call (the release's eval_batch_size 1, half_precision False);
  (b) fast:    `pipe.enable_fast_sampling(dtype, channels_last, compile)` and --batch-size clips per call
               (float16 on a GPU, as `wen2018_release_fast`; float32 on the CPU).

    python benchmarks/bench_sampling.py --device cuda --out     # SD-1.5 size, 256x256, 6 frames, 200 and 50 steps
    python benchmarks/bench_sampling.py --device cpu --size smoke --height 16 --steps 2 --clips 2   # seconds (the test)

Prints clips per second and peak memory of (a) and (b) side by side for each step count, the speed-up, and the largest
difference between their frames (same per-clip generators: ~1e-6 in float32, where only the batching differs).
Peak memory: CUDA `max_memory_allocated` over the timed run (weights included); CPU: the weights' bytes plus the peak
of the tensors allocated during a one-step call (torch profiler), since the per-step peak is what grows with the batch.
`--out` writes the results to benchmarks/results/bench_sampling_<device>.json (or to the path given).
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from bench_attention import _cpu_peak, make_unet2d
from bench_encoder import _sizes as encoder_sizes
from bench_wen2018_gpu import V as SD15_VOXELS, build as build_sd15
from mindvideo.core import get_device, load_preset
from mindvideo.foundation import make_scheduler as sd_noise_schedule, make_vae
from mindvideo.inflate import unet_from_2d
from mindvideo.mae import FMRIEncoder
from mindvideo.pipeline import MindVideoPipeline
from mindvideo.reconstruct import make_scheduler

RESULTS = Path(__file__).resolve().parent / "results"


def build(size:str, device:str)->MindVideoPipeline:
    "A float32 pipeline of random weights: the release's video UNet, a VAE, an fMRI encoder and DDIM, at `size`."
    if size == "sd15":  # SD-1.5's UNet and VAE, the paper's encoder (bench_wen2018_gpu's builder)
        unet, vae, enc = build_sd15(device, torch.float32)
    else:  # a preset's stand-in sizes
        cfg = load_preset(size); u2, _, _ = make_unet2d(size)
        unet, vae, enc = unet_from_2d(u2), make_vae(cfg.foundation, cfg.data.frame_size), FMRIEncoder(**encoder_sizes(size)["kw"])
    pipe = MindVideoPipeline(vae=vae, unet=unet, fmri_encoder=enc, scheduler=make_scheduler(sd_noise_schedule().config, "ddim"),
                             vae_scale=0.18215)
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.unet, pipe.vae, pipe.fmri_encoder): m.eval()
    return pipe.to(device)


def _sync(device:str):
    if device.startswith("cuda"): torch.cuda.synchronize()


def run(pipe, fmri, steps:int, batch:int, a)->dict:
    "Sample every window of `fmri`, `batch` per call: frames, seconds, clips/s and peak memory."
    cuda = a.device.startswith("cuda")
    neg = torch.zeros(fmri.shape[1:])  # the negative condition (the split's mean fMRI; its value does not change the cost)
    kw = dict(negative_fmri=neg, num_frames=a.frames, height=a.height, width=a.height, guidance_scale=12.5,
              decode_chunk_size=a.decode_chunk_size, output_type="np")
    def call(i, n_steps):  # clip k's noise comes from its own generator, seeded k, whatever the batch
        gens = [torch.Generator().manual_seed(k) for k in range(i, min(i + batch, len(fmri)))]
        return pipe(fmri[i:i + batch], generator=gens, num_inference_steps=n_steps, **kw).frames
    call(0, 1)  # warm-up (and compilation, if asked)
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    _sync(a.device); t = time.perf_counter()
    frames = np.concatenate([call(i, steps) for i in range(0, len(fmri), batch)])
    _sync(a.device); dt = time.perf_counter() - t
    if cuda: peak = torch.cuda.max_memory_allocated()
    else:
        weights = sum(x.numel() * x.element_size() for m in (pipe.unet, pipe.vae, pipe.fmri_encoder) for x in [*m.parameters(), *m.buffers()])
        peak = weights + _cpu_peak(lambda: call(0, 1))
    return dict(frames=frames, seconds=dt, clips_per_s=len(fmri) / dt, peak_bytes=int(peak))


def device_name(device:str)->str:
    "'cpu', or the GPU's name in lower case, e.g. 'h200' for an NVIDIA H200."
    if not device.startswith("cuda"): return device.split(":")[0]
    name = torch.cuda.get_device_name(torch.device(device)).lower().removeprefix("nvidia").strip()
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_") or "cuda"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--size", default="sd15", choices=("smoke", "quick", "sd15"), help="model size (sd15: SD-1.5 UNet and VAE, paper encoder)")
    ap.add_argument("--height", type=int, default=256, help="frame height = width in pixels")
    ap.add_argument("--frames", type=int, default=6, help="frames per clip")
    ap.add_argument("--steps", type=int, nargs="+", default=[200, 50], help="DDIM step counts (release: 200)")
    ap.add_argument("--clips", type=int, default=8, help="clips sampled by each path")
    ap.add_argument("--batch-size", type=int, default=8, help="clips per call on the fast path (wen2018_release_fast: 8)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"),
                    help="fast path's UNet and VAE precision (auto: float16 on a GPU, float32 on the CPU)")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="fast path without channels-last")
    ap.add_argument("--compile", action="store_true", help="fast path with torch.compile on the UNet")
    ap.add_argument("--decode-chunk-size", type=int, default=16, help="frames per VAE decode call")
    ap.add_argument("--out", nargs="?", const="default", default=None,
                    help="write the JSON results: to benchmarks/results/bench_sampling_<device>.json, or to the path given")
    a = ap.parse_args(argv)
    a.device = get_device(a.device)
    dtype = a.dtype if a.dtype != "auto" else ("float16" if a.device.startswith("cuda") else "float32")
    pipe = build(a.size, a.device)
    w, v = pipe._fmri_shape()
    fmri = torch.randn(a.clips, w, v, generator=torch.Generator().manual_seed(0))
    dev = device_name(a.device)
    gpu = f" ({torch.cuda.get_device_name(torch.device(a.device))})" if a.device.startswith("cuda") else f" ({torch.get_num_threads()} threads)"
    print(f"# bench_sampling: the release's video UNet at {a.size} size, random weights, on {a.device}{gpu}; {a.height}x{a.height}, "
          f"{a.frames} frames, {a.clips} clips, guidance 12.5, DDIM; torch {torch.__version__}")
    fast = dict(dtype=dtype, batch_size=min(a.batch_size, a.clips), channels_last=a.channels_last, compile=a.compile)
    paths = {"release": dict(dtype="float32", batch_size=1, channels_last=False, compile=False), "fast": fast}
    print(f"# (a) release: float32, 1 clip per call   (b) fast: {dtype}, {fast['batch_size']} clips per call, "
          f"channels-last {'on' if a.channels_last else 'off'}, compile {'on' if a.compile else 'off'}")
    results, frames = [], {}
    for name, p in paths.items():  # (a) first: enable_fast_sampling changes the pipeline in place
        if name == "fast": pipe.enable_fast_sampling(dtype=p["dtype"], channels_last=p["channels_last"], compile=p["compile"])
        for steps in a.steps:
            r = run(pipe, fmri, steps, p["batch_size"], a)
            frames[(name, steps)] = r.pop("frames")
            results.append(dict(path=name, steps=steps, clips=a.clips, **p, **r))
    get = {(r["path"], r["steps"]): r for r in results}
    diff = {str(s): float(np.abs(frames[("fast", s)] - frames[("release", s)]).max()) for s in a.steps}
    print(f"{'steps':>5} | {'(a) clips/s':>11} {'peak MiB':>9} | {'(b) clips/s':>11} {'peak MiB':>9} | {'speed-up':>8} | max |frame diff|")
    for s in a.steps:
        r0, r1 = get[("release", s)], get[("fast", s)]
        print(f"{s:>5} | {r0['clips_per_s']:>11.4g} {r0['peak_bytes'] / 2**20:>9.1f} | {r1['clips_per_s']:>11.4g} "
              f"{r1['peak_bytes'] / 2**20:>9.1f} | {r1['clips_per_s'] / r0['clips_per_s']:>7.2f}x | {diff[str(s)]:.1e}", flush=True)
    res = dict(device=dev, device_name=torch.cuda.get_device_name(torch.device(a.device)) if a.device.startswith("cuda") else "cpu",
               torch=torch.__version__, args=vars(a), results=results, max_abs_diff=diff)
    if a.out is not None:
        out = RESULTS / f"bench_sampling_{dev}.json" if a.out == "default" else Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"# results: {out}")
    return res


if __name__ == "__main__":
    main()
