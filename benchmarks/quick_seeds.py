"""Which of the quick table's conclusions hold across model seeds (the world fixed).

Usage:  python benchmarks/quick_seeds.py [--seeds 0 1 2] [--preset quick] [--work DIR] [--out FILE]

For each seed, the whole chain (every notebook) runs for the preset, and `06_eval` for each of its ablations (as 06d
says to make them: `06_eval` trains what it reads through the stage cache, and the ablation table reads only its
`06_table_main.json`), in a project copy of its own under `--work` (so the committed `figures/` are never touched),
with `data.world_seed` left at the preset's fixed world: only the models, the classifiers and the metrics' random
trials change with the seed. The script then
reads each run's `06_table_main.json` and `06d_table_ablation.json` and writes `--out`
(default `benchmarks/results/<preset>_seeds.json`): for every semantic column,

- MinD-Video's margin over each ridge decoder on all test clips, and each ablation's margin over the full model,
  per seed (mean and standard error over clips), with the mean and spread (min, max) across seeds;
- `holds`: "ahead" when the margin is above two standard errors for every seed, "behind" when below minus two
  standard errors for every seed, else "not consistent". 06's prose states a comparison as a finding only when it
  holds;
- `contrastive_retrieval`, from each run's `03_retrieval.json`: the test retrieval of the contrastive encoder and of
  the ridge decoders (mean, sd, min and max over seeds), and the encoder's n-way identification margin over
  ridge (window) with the same `holds` reading. `03a_augment` cites it.

Each seed's chain runs as `mindvideo reproduce` in its own copy with `PYTHONPATH` set to that copy, so its kernels
import the copy's `mindvideo` (not the editable install's, which may change while the runs go on). `--jobs 2` runs two
seeds at once with one torch thread each. On 2 CPU cores that is about as fast in all as one seed after the other on
two threads, not faster: quick's training runs nearly twice as fast on two threads as on one (contrastive steps
measured 1.9x), its sampling about 1.6x. One thread also changes the last bits of trained weights against two, so a
seed's numbers are those of its thread count (each run records `torch_threads`, and the commit its copy was made
from: a copy is no git checkout). A copy that already holds finished runs (e.g. seed 0's, from
`mindvideo reproduce --preset quick` in a clone at `<work>/seed0`) is reused: up-to-date notebooks are skipped.
`--presets-only` skips the ablations. `tests/test_benchmarks.py` checks the summary on hand-made margins.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mindvideo.core import ABLATIONS, write_json
from mindvideo.paths import find_project
from mindvideo.provenance import git_commit
from mindvideo.reproduce import copy_project

ROOT = find_project(Path(__file__).parent)
SOURCE = ".source_commit"  # in a project copy: the commit of the project it was copied from


def _commit(proj: Path, recorded: str) -> str:
    "A run's commit: the one its provenance records, or for a run in a project copy (no git) the commit the copy was made from."
    src = proj / SOURCE
    return f"copy of {src.read_text().strip()}" if recorded == "unknown" and src.is_file() else recorded


def _read(path: Path) -> dict:
    if not path.is_file(): raise FileNotFoundError(f"{path}: expected the metrics of a finished run")
    return json.loads(path.read_text())["metrics"]


def _verdict(ms) -> str:
    if all(m["mean"] > 2 * m["se"] for m in ms): return "ahead"
    if all(m["mean"] < -2 * m["se"] for m in ms): return "behind"
    return "not consistent"


def summarise(per_seed: dict) -> dict:
    "{column: {comparison: {per_seed, mean, min, max, holds}}} from {seed: {column: {comparison: {mean, se}}}}."
    seeds = sorted(per_seed)
    cols = sorted(set.intersection(*(set(per_seed[s]) for s in seeds)))
    out = {}
    for c in cols:
        comps = sorted(set.intersection(*(set(per_seed[s][c]) for s in seeds)))
        out[c] = {}
        for k in comps:
            ms = [per_seed[s][c][k] for s in seeds]
            means = np.array([m["mean"] for m in ms])
            out[c][k] = dict(per_seed={str(s): m for s, m in zip(seeds, ms)}, mean=float(means.mean()),
                             min=float(means.min()), max=float(means.max()), holds=_verdict(ms))
    return out


def summarise_retrieval(per_seed: dict) -> dict:
    "03's test retrieval across seeds: each method's scores (mean, sd, min, max over seeds) and the contrastive encoder's n-way identification margin over ridge (window), as `summarise` reads it."
    seeds = sorted(per_seed)
    scores = {}
    for m in ("contrastive", "ridge (window)", "ridge (mean)", "MAE only"):
        for k in per_seed[seeds[0]]["retrieval"].get(m, {}):
            v = np.array([per_seed[s]["retrieval"][m][k] for s in seeds])
            scores.setdefault(m, {})[k] = dict(mean=float(v.mean()), sd=float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                                               min=float(v.min()), max=float(v.max()))
    margins = {s: {c: {"ridge (window)": m} for c, m in per_seed[s]["identification_margin_contrastive_minus_ridge"].items()} for s in seeds}
    return dict(retrieval=scores, identification_minus_ridge=summarise(margins))


def run_seed(seed: int, variants: list, work: Path, threads: int | None = None) -> Path:
    "One seed in the project copy <work>/seed<seed>: each ablation's 06_eval, then the base preset's whole chain (its 06d reads the ablations)."
    proj = work / f"seed{seed}"
    if not proj.exists():
        copy_project(proj, ROOT)
        (proj / SOURCE).write_text(git_commit(ROOT))  # a copy is no git checkout: its runs record commit 'unknown'
    env = dict(os.environ, PYTHONPATH=str(proj))  # the copy's kernels import the copy's mindvideo
    if threads: env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "mindvideo", "reproduce", "--seed", str(seed), *args], cwd=proj, env=env, check=True)
    for v in variants[1:] + variants[:1]:
        print(f"seed {seed}: {v}", flush=True)
        run("--preset", v, *(("--only", "06_eval") if v != variants[0] else ()))  # an ablation: only what its table row needs
    if len(variants) > 1:  # the base's 06d may have run before the ablations (a reused copy): its ablation table reads them now
        run("--preset", variants[0], "--only", "06d_ablations", "--force")
    return proj


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--presets-only", action="store_true", help="no ablations: only the preset's own margins")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".seeds", help="project copies (one per seed)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=1, help="seeds run at once, each with cpu_count // jobs torch threads")
    ap.add_argument("--no-run", action="store_true", help="only read the finished runs in <work>/seed<s>")
    a = ap.parse_args(argv)
    variants = [a.preset] + ([] if a.presets_only else [f"{a.preset}+{k}" for k in ABLATIONS])
    threads = max(1, (os.cpu_count() or 1) // a.jobs) if a.jobs > 1 else None
    if a.no_run: projs = {s: a.work / f"seed{s}" for s in a.seeds}
    else:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            projs = dict(zip(a.seeds, pool.map(lambda s: run_seed(s, variants, a.work, threads), a.seeds)))
    baselines, ablations, retrieval = {}, {}, {}
    for s in a.seeds:
        fig = projs[s] / "figures" / a.preset
        cols = _read(fig / "06_table_main.json")["all_test_clips"]["columns"]
        baselines[s] = {c: v["margin"] for c, v in cols.items()}
        retrieval[s] = _read(fig / "03_retrieval.json")
        if not a.presets_only:
            abl = _read(fig / "06d_table_ablation.json").get("paired_margins_all_test_clips", {})
            ablations[s] = {}
            for variant, columns in abl.items():
                for c, m in columns.items(): ablations[s].setdefault(c, {})[variant] = m
    prov = {str(s): json.loads((projs[s] / "figures" / a.preset / "06_table_main.json").read_text())["provenance"] for s in a.seeds}
    res = dict(preset=a.preset, seeds=a.seeds, world_seed="the preset's data.world_seed (fixed)",
               runs={s: dict(commit=_commit(projs[int(s)], p["commit"]), torch_threads=p.get("environment", {}).get("torch_threads")) for s, p in prov.items()},
               mindvideo_minus_baseline=summarise(baselines), contrastive_retrieval=summarise_retrieval(retrieval))
    if ablations: res["ablation_minus_full"] = summarise(ablations)
    out = a.out or ROOT / "benchmarks" / "results" / f"{a.preset}_seeds.json"
    write_json(res, out)
    held = [(c, k) for c, d in res["mindvideo_minus_baseline"].items() for k, v in d.items() if v["holds"] == "ahead"]
    print(f"MinD-Video ahead of a ridge decoder for every seed: {len(held)} of "
          f"{sum(len(d) for d in res['mindvideo_minus_baseline'].values())} comparisons -> {out}")
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
