"""Training throughput of mindvideo's spatiotemporal FMRIEncoder (samples/s), at the quick and paper sizes.

Usage:  python benchmarks/bench_encoder.py [--device cpu|cuda|auto] [--sizes quick,paper] [--batch N] [--steps N] [--token-dropout P]

Each size runs `--warmup` untimed steps, then `--steps` timed optimiser steps (AdamW, MSE to a random target) on
random fMRI windows (B, w, V_pad). The paper size is the release's encoder: embed 1024, depth 24, 16 heads,
mlp_ratio 1.0, temporal attention, V = 3731 -> 3744 (wrap-padded to a multiple of 16), w = 2, output 77 x 768.
On a 2-core CPU the paper size takes tens of seconds per step, so by default it runs one timed step without warm-up
(the first step includes allocator warm-up: read its number as a lower bound); the whole default run takes ~1-2 min.
Measured (this repo, Nov 2026): H100, --device cuda: quick 3,900 samples/s (batch 64), paper 27 samples/s (batch 2);
shared 2-core CPU under load: quick ~8 samples/s, paper ~0.03 samples/s (65 s/step, batch 2).
Each size is also timed with token dropout (`--token-dropout`, default 0.75: the backbone sees a quarter of the patches,
as the quick contrastive stage trains), side by side in the same run, and the speed-up is printed.

`--temporal-kernel both` times the two kernels of the temporal attention side by side: each block's temporal
attention attends over the `w` frames of a window (w = 2: sequences of two tokens, B*L of them). PyTorch's
`scaled_dot_product_attention` dispatches on CPU to a flash kernel whose per-sequence overhead dwarfs two-token work, so
the package computes softmax(QK^T / sqrt(d)) V explicitly for sequences of at most `Attention.EXPLICIT_MAX_TOKENS` (4)
tokens ('explicit'); 'sdpa' sets that attribute to 0 (the spatial attention, over the patches, is SDPA in both). The
script prints both timings, their ratio, and the largest difference of one forward pass's output (float rounding only,
not a different function); `--json FILE` writes the rows.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

import mindvideo.blocks as blocks
from mindvideo.augment import drop_tokens
from mindvideo.core import get_device, load_preset, write_json
from mindvideo.layouts import pad_to_patch_size
from mindvideo.mae import FMRIEncoder


def _sizes(name: str) -> dict:
    "Encoder kwargs and default batch size for one benchmark size."
    if name == "paper":
        return dict(kw=dict(num_voxels=3744, patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=1.0,
                            window_size=2, temporal_attention=True, out_tokens=77, out_dim=768), batch=2)
    cfg = load_preset(name)
    V = pad_to_patch_size(np.zeros((1, cfg.data.n_voxels)), cfg.data.patch_size).shape[-1]  # as the data are padded (always 1..patch voxels)
    return dict(kw=dict(num_voxels=V, patch_size=cfg.data.patch_size, embed_dim=cfg.mae.embed_dim, depth=cfg.mae.depth,
                        num_heads=cfg.mae.num_heads, mlp_ratio=cfg.mae.mlp_ratio, window_size=cfg.data.window_size,
                        temporal_attention=cfg.encoder.temporal_attention, out_tokens=cfg.encoder.out_tokens,
                        out_dim=cfg.encoder.out_dim), batch=cfg.contrastive.batch_size)


@contextlib.contextmanager
def temporal_kernel(kind: str):
    "Within the block, `Attention` computes sequences of <= `EXPLICIT_MAX_TOKENS` tokens with SDPA ('sdpa') or explicitly ('explicit', the package's default)."
    original = blocks.Attention.EXPLICIT_MAX_TOKENS
    blocks.Attention.EXPLICIT_MAX_TOKENS = original if kind == "explicit" else 0
    try: yield
    finally: blocks.Attention.EXPLICIT_MAX_TOKENS = original


def forward_difference(kw: dict, batch: int, device: str) -> float:
    "Largest |difference| between one forward pass of a fresh encoder under the two temporal kernels."
    torch.manual_seed(0); model = FMRIEncoder(**kw).to(device).eval(); x = torch.randn(batch, kw["window_size"], kw["num_voxels"], device=device)
    with torch.no_grad():
        with temporal_kernel("sdpa"): a = model(x)
        with temporal_kernel("explicit"): b = model(x)
    return float((a - b).abs().max())


def bench(kw: dict, batch: int, steps: int, warmup: int, device: str, token_dropout: float = 0.0) -> dict:
    "Time `steps` training steps of an FMRIEncoder built from `kw` (keeping 1 - `token_dropout` of the patches); returns samples/s and s/step."
    torch.manual_seed(0)
    model = FMRIEncoder(**kw).to(device).train()
    keep = drop_tokens(batch, model.num_patches, token_dropout, torch.Generator().manual_seed(0)).to(device) if token_dropout > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, kw["window_size"], kw["num_voxels"], device=device)
    y = torch.randn(batch, kw["out_tokens"], kw["out_dim"], device=device)
    def step():
        loss = torch.nn.functional.mse_loss(model(x, keep_tokens=keep), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(warmup): step()
    if device.startswith("cuda"): torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    if device.startswith("cuda"): torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return dict(params_M=sum(p.numel() for p in model.parameters()) / 1e6, s_per_step=dt / steps, samples_per_s=batch * steps / dt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda[:N], mps or auto")
    ap.add_argument("--sizes", default="quick,paper", help="comma-separated: smoke, quick, paper")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: quick = contrastive.batch_size, paper = 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default on CPU: 3, paper size 1; on GPU: 20)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1; 0 for the paper size on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--token-dropout", type=float, default=0.75, help="fraction of patches dropped in the second timing of each size (0 = skip it)")
    ap.add_argument("--temporal-kernel", default="explicit", choices=("sdpa", "explicit", "both"),
                    help="temporal attention over the window: SDPA, the package's explicit kernel, or both side by side")
    ap.add_argument("--json", default="", metavar="FILE", help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    device = get_device(a.device)
    print(f"device {device} | torch {torch.__version__} | CPU threads {torch.get_num_threads()}")
    kernels = ("sdpa", "explicit") if a.temporal_kernel == "both" else (a.temporal_kernel,)
    print(f"{'size':>6} {'params':>9} {'V_pad':>6} {'w':>2} {'batch':>5} {'steps':>5} {'tok.drop':>8} {'temporal':>8} {'s/step':>8} {'samples/s':>10}")
    rows = []
    for name in a.sizes.split(","):
        s = _sizes(name.strip()); batch = a.batch or s["batch"]
        cpu_paper = device == "cpu" and name == "paper"
        steps = a.steps or (20 if device != "cpu" else (1 if cpu_paper else 3))
        warmup = a.warmup if a.warmup is not None else (0 if cpu_paper else 1)
        res = {}
        for p in [0.0] + ([a.token_dropout] if a.token_dropout > 0 else []):
            for kern in kernels:
                with temporal_kernel(kern): r = res[p, kern] = bench(s["kw"], batch, steps, warmup, device, token_dropout=p)
                rows.append(dict(size=name, batch=batch, steps=steps, token_dropout=p, temporal_kernel=kern, **r))
                print(f"{name:>6} {r['params_M']:>8.1f}M {s['kw']['num_voxels']:>6} {s['kw']['window_size']:>2} {batch:>5} {steps:>5} "
                      f"{p:>8.2f} {kern:>8} {r['s_per_step']:>8.3f} {r['samples_per_s']:>10.2f}", flush=True)
        k0 = kernels[0]
        if a.token_dropout > 0:
            print(f"{name:>6} token dropout {a.token_dropout:.2f}: {res[0.0, k0]['s_per_step'] / res[a.token_dropout, k0]['s_per_step']:.2f}x faster per step", flush=True)
        if len(kernels) == 2:
            for p in sorted({q for q, _ in res}):
                print(f"{name:>6} token dropout {p:.2f}: explicit temporal attention {res[p, 'sdpa']['s_per_step'] / res[p, 'explicit']['s_per_step']:.2f}x "
                      f"faster per step than SDPA", flush=True)
            print(f"{name:>6} largest |difference| of one forward pass: {forward_difference(s['kw'], min(batch, 8), device):.2e}", flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(dict(device=str(device), torch=torch.__version__, threads=torch.get_num_threads(), rows=rows), a.json)


if __name__ == "__main__":
    main()
