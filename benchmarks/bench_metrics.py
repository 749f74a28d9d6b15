"""Speed of the vectorised N-way top-K metric (`mindvideo.metrics.n_way_top_k`) against the release's per-sample loop.

Usage:  python benchmarks/bench_metrics.py [--clips N] [--classes C] [--n-way n] [--trials T] [--loop-clips M]

Both run on the same random logits in one process. The release's loop (`_n_way_release_loop`, spec §6) is timed on
`--loop-clips` clips and scaled to `--clips`, since the full loop takes minutes; the printed ratio is loop / vectorised
for the same number of clips. Both implementations agree in distribution (`tests/test_eval.py`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from mindvideo.metrics import _n_way_release_loop, n_way_top_k


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=1200); ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--n-way", type=int, default=50); ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--loop-clips", type=int, default=20)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    g, p = rng.standard_normal((a.clips, a.classes)), rng.standard_normal((a.clips, a.classes))
    t0 = time.perf_counter(); acc = n_way_top_k(g, p, a.n_way, a.trials, seed=0); vec = time.perf_counter() - t0
    m = min(a.loop_clips, a.clips); r = np.random.default_rng(0)
    t0 = time.perf_counter()
    loop_acc = np.mean([_n_way_release_loop(p[i], np.argsort(-g[i])[:3], a.n_way, a.trials, 1, r) for i in range(m)])
    loop = (time.perf_counter() - t0) * a.clips / m
    print(f"{a.clips} clips x {a.trials} trials, {a.n_way}-way over {a.classes} classes (release protocol)")
    print(f"  vectorised: {vec:.3f} s   (mean accuracy {acc.mean():.3f})")
    print(f"  release loop: {loop:.1f} s, extrapolated from {m} clips   (mean accuracy {loop_acc:.3f})")
    print(f"  loop / vectorised: {loop / vec:.0f}x")


if __name__ == "__main__":
    main()
