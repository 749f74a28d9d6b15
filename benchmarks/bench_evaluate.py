"""Time of `mindvideo evaluate` per clip: a folder of release-format GIFs of the quick geometry, read and scored.

Usage:  python benchmarks/bench_evaluate.py [--clips 240] [--preset quick] [--size 32] [--out FILE]

Writes `--clips` release GIFs ([GT | pred], 6 frames, `--size` px: quick's test clips) into a temporary folder, then
times `evaluate_folder` on them end to end (reading the GIFs, classifying ground truth and reconstructions with every
classifier, both protocols, the chance levels, SSIM two ways, writing the report). `--preset quick` scores with the
quick preset's classifiers (its trained CNNs are trained and cached on first use, which is timed apart);
`--preset none` with the default ones (EfficientNet-Lite0 at 224 px when no ViT/VideoMAE folder is found).
The clips are synthetic (a ground truth and a noisy copy), which does not change the work done per clip.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mindvideo.core import write_json
from mindvideo.evaluate import evaluate_folder, find_classifiers, write_release_gif


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=240); ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--preset", default="quick", help="whose classifiers score the clips; 'none' = the default ones")
    ap.add_argument("--out", type=Path, default=None, help="optional JSON of the timings")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    classifiers = find_classifiers(None if a.preset == "none" else a.preset)
    t_cls = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for k in range(1, a.clips + 1):
            gt = rng.integers(0, 256, (1, a.size, a.size, 3)).repeat(6, 0).astype(np.uint8)
            pred = np.clip(gt.astype(int) + rng.integers(-40, 40, gt.shape), 0, 255).astype(np.uint8)
            write_release_gif(gt, pred, d/"gifs"/f"test{k}.gif")
        t0 = time.perf_counter()
        rep = evaluate_folder(d/"gifs", out=d/"report", classifiers=classifiers)
        sec = time.perf_counter() - t0
    res = dict(clips=a.clips, size=a.size, classifiers=list(rep["classifiers"]), torch_threads=torch.get_num_threads(),
               seconds=round(sec, 2), seconds_per_clip=round(sec / a.clips, 4), classifier_setup_seconds=round(t_cls, 1))
    print(f"{a.clips} release GIFs of {a.size} px, classifiers {', '.join(res['classifiers'])} ({torch.get_num_threads()} threads):")
    print(f"  evaluate: {sec:.1f} s in all, {1000 * sec / a.clips:.0f} ms per clip (classifier setup {t_cls:.1f} s, apart)")
    if a.out: write_json(res, a.out)
    return res


if __name__ == "__main__":
    main()
