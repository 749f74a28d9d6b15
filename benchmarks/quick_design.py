"""Design choices of a preset, measured on the test clips that `06_eval`'s table does not score.

Usage:  python benchmarks/quick_design.py scale [--values 1 4 7.5 10 12.5 15] [--preset quick] [--seed 0] [--out FILE]
        python benchmarks/quick_design.py steps [--values 800 1600 3200] [--preset quick] [--seed 0] [--out FILE]
        python benchmarks/quick_design.py epochs [--values 40 60 80] [--preset quick] [--seed 0] [--out FILE]
        python benchmarks/quick_design.py sampling [--values 10 15 20 25 50] [--preset quick] [--seed 0] [--out FILE]
        python benchmarks/quick_design.py STUDY --values ... --set KEY=VALUE [--set ...] --out FILE

- `scale`: MinD-Video's reconstructions at each adversarial guidance scale (s = 1 is no guidance), with the preset's
  trained models, steps and sampling seed. 05's "Which scale for the stand-in generator" cites the result,
  `benchmarks/results/<preset>_guidance_scale.json`.
- `steps`: the preset co-trained for each number of steps (`diffusion.steps`; each value is a cache stage of its own,
  so a value equal to the preset's reuses its models), then sampled at the preset's scale. 04's "How long `quick`
  co-trains" cites `benchmarks/results/<preset>_cotrain_steps.json`.
- `epochs`: the preset with each number of contrastive epochs (`contrastive.epochs`), then co-trained and sampled as
  the preset is: what the costliest stage of a cold quick run buys (03's "How long `quick` trains the alignment"
  cites `benchmarks/results/<preset>_contrastive_epochs.json`).
- `sampling`: MinD-Video's reconstructions with each number of DDIM steps (`guidance.num_inference_steps`), with the
  preset's trained models and scale: what the steps that every reconstruction pays for buy (05's "How many
  sampling steps" cites `benchmarks/results/<preset>_sampling_steps.json`).

- `--set KEY=VALUE` (repeatable): a candidate recipe. Every value is run with these preset overrides too (e.g.
  `sampling --values 10 15 --set guidance.scheduler=dpm`, or `epochs --values 50 --set contrastive.lr=1e-3`), and
  paired with the preset as it is, the row `preset` (then `default` is "preset" and the preset's own value is not
  added). Write such a study to a file of its own with `--out`. 05's "How many sampling steps" reads
  `benchmarks/results/quick_sampling_dpm.json` (`sampling --values 10 15 20 --set guidance.scheduler=dpm`), 03's "How
  long `quick` trains the alignment" `benchmarks/results/quick_contrastive_lr.json` (`epochs --values 50 60 --set
  contrastive.lr=1e-3`).

The clips are the test clips that `06_eval` leaves out of its table (its table scores `cfg.eval.max_test_samples` of
them, `mindvideo.reconstruct.recon_index`), so a choice read from this file is not fitted to the table's clips. They
are scored with 06's classifiers and protocols (`mindvideo.evaluate.evaluate_clips`). For each value the file holds
every semantic column's mean ± standard error over the clips, the top-1 = true category rate of the label-aware
classifiers, the paired margin over the preset's own value, clip by clip (the same initial noise per clip), and
`wall_s`, the seconds this run spent on the value: training and sampling, or only loading what an earlier run cached.
Minutes to an hour on 2 CPU cores: each scale or number of sampling steps samples every test clip once, each number of
co-training steps co-trains, and each number of epochs trains the contrastive stage and co-trains.
`tests/test_benchmarks.py` runs them at toy size.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mindvideo.baselines import paired_margin
from mindvideo.core import ConfigError, load_preset, seed_everything, write_json
from mindvideo.data import load_dataset
from mindvideo.eval import load_classifiers
from mindvideo.evaluate import evaluate_clips
from mindvideo.paths import find_project
from mindvideo.provenance import environment, git_commit
from mindvideo.readings import split_margins
from mindvideo.reconstruct import load_pipeline, recon_index, reconstruct
from mindvideo.reproduce import parse_set

ROOT = find_project(Path(__file__).parent)
STUDIES = {"scale": ("guidance.scale", "guidance_scale", (1.0, 4.0, 7.5, 10.0, 12.5, 15.0)),
           "steps": ("diffusion.steps", "cotrain_steps", (800, 1600, 3200)),
           "epochs": ("contrastive.epochs", "contrastive_epochs", (40, 60, 80)),
           "sampling": ("guidance.num_inference_steps", "sampling_steps", (10, 15, 20, 25, 50))}


def heldout(n: int, max_test_samples: int) -> np.ndarray:
    "The test items that a table of `max_test_samples` evenly spread clips does not score (all of them when it scores all)."
    table = recon_index(n, max_test_samples)
    rest = np.setdiff1d(np.arange(n), table)
    return rest if len(rest) else table


def summarise(per_clip: dict, base: dict) -> dict:
    "{columns: {metric: {mean, se}}, margin: {metric: {mean, se}} over `base`} for the semantic and label metrics."
    keys = [k for k in per_clip if "-way" in k or k.endswith("/label")]
    out = dict(columns={}, margin={})
    for k in keys:
        v = np.asarray(per_clip[k], float); v = v[~np.isnan(v)]
        out["columns"][k] = dict(mean=float(v.mean()), se=float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan"))
        m, se = paired_margin(per_clip[k], base[k])
        out["margin"][k] = dict(mean=m, se=se)
    return out


def run_study(study: str, values, preset: str = "quick", seed: int = 0, overrides: dict | None = None) -> dict:
    "Score MinD-Video on the held-out test clips for each value of the study's setting (see the module's docstring)."
    key, _, _ = STUDIES[study]
    overrides = dict(overrides or {})
    if key in overrides: raise ConfigError(f"overrides: {key!r} is the setting that the {study!r} study varies; give it with values")
    load_preset(preset, overrides)  # the overrides are valid, before anything runs
    base_cfg = load_preset(preset)
    section, field = key.split(".")
    default = getattr(getattr(base_cfg, section), field)
    values = sorted({float(v) if study == "scale" else int(v) for v in values} | (set() if overrides else {default}))
    points = {str(v): {key: v} | overrides for v in values}  # the row of each value and the preset overrides it runs with
    if overrides: points = {"preset": {}} | points  # a candidate recipe: paired with the preset as it is
    default = "preset" if overrides else default
    test = load_dataset(base_cfg, "test", seed=seed)
    idx = heldout(len(test), base_cfg.eval.max_test_samples)
    classifiers = load_classifiers(base_cfg, seed=seed)
    e = base_cfg.eval
    per_value, wall = {}, {}
    for v, over in points.items():
        t0 = time.perf_counter()
        cfg = load_preset(preset, over)  # a scale or sampling steps: the same trained models (their stages ignore guidance)
        seed_everything(seed)
        pipe = load_pipeline(cfg, seed=seed, device="cpu")  # co-trains the models of `cfg` when they are not cached
        kw = dict(guidance="none") if study == "scale" and over.get(key) == 1.0 else {}  # s = 1 is sampling without guidance
        rec = reconstruct(cfg, "test", seed=seed, max_samples=0, pipe=pipe, dataset=test, **kw)
        pos = np.searchsorted(rec["index"], idx)
        clips = dict(gt=rec["gt"][pos], pred=rec["pred"][pos])
        labels = np.asarray(rec["labels"])[pos]
        per_value[v] = evaluate_clips(clips, classifiers, labels, n_ways=e.n_ways, n_trials=e.n_trials, top_k=e.top_k,
                                      seed=seed)["per_clip"]
        wall[v] = round(time.perf_counter() - t0, 1)
    rows = {v: summarise(per_value[v], per_value[str(default)]) | dict(wall_s=wall[v]) for v in points}
    return dict(study=study, setting=key, preset=preset, seed=seed, default=str(default), values=list(points), overrides=overrides,
                clips=dict(n=int(len(idx)), which="the test clips that 06_eval's table does not score", index=idx.tolist()),
                sampling=dict(mode=base_cfg.guidance.mode, scale=base_cfg.guidance.scale,
                              num_inference_steps=base_cfg.guidance.num_inference_steps, sampling_seed=base_cfg.guidance.seed),
                protocol=dict(n_ways=list(e.n_ways), n_trials=e.n_trials, top_k=e.top_k),
                rows=rows, commit=git_commit(ROOT), environment=environment())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=sorted(STUDIES))
    ap.add_argument("--values", nargs="+", type=float, default=None, help="settings to compare (the preset's own is always added; with --set, the preset as it is)")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="preset override of every value (a candidate recipe; repeatable)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    _, name, defaults = STUDIES[a.study]
    overrides = parse_set(a.set)
    if overrides and a.out is None: ap.error("--set: give the candidate recipe's study a file of its own with --out")
    res = run_study(a.study, a.values or defaults, a.preset, a.seed, overrides)
    out = a.out or ROOT / "benchmarks" / "results" / f"{a.preset}_{name}.json"
    write_json(res, out)
    for v, r in res["rows"].items():
        ahead, behind, _ = split_margins(r["margin"])
        print(f"{res['setting']}={v:>7s}: " + "  ".join(f"{k} {c['mean']:.3f}" for k, c in r["columns"].items())
              + f"  ({r['wall_s']:.0f} s; beyond 2 SE of {res['default']}: ahead on {len(ahead)}, behind on {len(behind)} of {len(r['margin'])})")
    print(f"-> {out}")
    return res


if __name__ == "__main__":
    main()
