"""Speed of the pretrained ImageNet classifier (EfficientNet-Lite0) against the number of frames per call, side by side.

Usage:  python benchmarks/bench_classifiers.py [--frames 480] [--sizes 128 224] [--batch-sizes 4 8 16 64] [--repeats 3] [--out FILE]

Every scoring of a reconstruction runs `imagenet_classifier(size).logits` over all of its frames: in `quick`
(`eval.imagenet_size` = 128) the 32 px frames are upsampled to 128 px, and `mindvideo evaluate` without ViT/VideoMAE
folders scores at 224 px. The same random frames go through the same model with each `batch_size` in one process,
each timed `--repeats` times (the best is printed); the ratio is the time at the largest batch size over the time at
each. The logits are compared with those of the largest batch size: a batch size that changes them by even one bit
is marked. On CPU, smaller calls are faster than 64 frames at a time: their activations stay in cache. `--out` writes
the timings as JSON (`benchmarks/results/bench_classifiers_cpu.json`).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from mindvideo.classifiers import imagenet_classifier
from mindvideo.core import write_json
from mindvideo.provenance import environment


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=480, help="frames scored per timing (quick's 240 test clips have 1,440)")
    ap.add_argument("--frame-size", type=int, default=32, help="side of the input frames (quick: 32)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="classifier input resolutions")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="optional JSON of the timings")
    a = ap.parse_args(argv)
    frames = np.random.default_rng(0).integers(0, 256, (a.frames, 1, a.frame_size, a.frame_size, 3), dtype=np.uint8)
    big = max(a.batch_sizes)
    print(f"{a.frames} frames of {a.frame_size} px, torch threads {torch.get_num_threads()}")
    rows = []
    for size in a.sizes:
        clf = imagenet_classifier(size)
        ref, times = None, {}
        for bs in sorted(a.batch_sizes, reverse=True):
            clf.batch_size = bs
            best, out = float("inf"), None
            for _ in range(a.repeats):
                t0 = time.perf_counter(); out = clf.logits(frames); best = min(best, time.perf_counter() - t0)
            times[bs] = best
            if ref is None: ref = out
            identical = bool(np.array_equal(out, ref))
            same = "identical" if identical else f"DIFFERENT (max {np.abs(out - ref).max():.2e})"
            print(f"  {size} px, {bs:3d} frames per call: {best:6.2f} s   {times[big] / best:4.2f}x   logits {same} to {big} per call")
            rows.append(dict(size=size, frames_per_call=bs, seconds=round(best, 3), speedup_vs_largest=round(times[big] / best, 2),
                             identical_logits=identical))
    if a.out is not None:
        env = environment()
        write_json(dict(benchmark="bench_classifiers", frames=a.frames, frame_size=a.frame_size, repeats=a.repeats,
                        torch_threads=env["torch_threads"], cpu=env["cpu"], cpu_count=os.cpu_count(), rows=rows), a.out)


if __name__ == "__main__":
    main()
