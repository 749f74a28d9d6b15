"""How far the MAE-only row of 03's retrieval table moves with the initialisation of the encoder's new parts.

Usage:  python benchmarks/mae_only_inits.py [--preset quick] [--inits 10] [--seed 0] [--out FILE]

The MAE-only encoder is what contrastive training starts from: the pretrained MAE of model seed `--seed`, new and
random temporal attention and output tokens, and the untrained head (CLIP's text projection). Its row in 03 comes from
one draw of the new parts. This script draws them `--inits` times (init seeds 0, 1, ...; init seed `--seed` is 03's
own draw) on the same MAE, embeds the test windows and identifies the test clips 2-way as 03 does (100 candidate sets
per query, by image and by caption). It writes `benchmarks/results/<preset>_mae_only_inits.json`: each draw's
accuracy and the mean, standard deviation, min and max over draws. 03 cites it. About a minute on 2 CPU cores.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mindvideo.contrastive import ContrastiveModel, clip_arrays, embed_fmri, init_head
from mindvideo.core import load_preset, seed_everything, write_json
from mindvideo.foundation import load_foundation
from mindvideo.mae import FMRIEncoder, load_mae
from mindvideo.paths import find_project
from mindvideo.provenance import environment, git_commit
from mindvideo.retrieval import identification_nway, unique_targets

ROOT = find_project(Path(__file__).parent)


def mae_only(cfg, mae, clip, num_voxels: int, init_seed: int) -> ContrastiveModel:
    "The MAE-only model of 03 with the new parts drawn from `init_seed` (as `mindvideo.mae.make_encoder` then `init_head` draw them)."
    e = cfg.encoder
    seed_everything(init_seed)
    enc = FMRIEncoder.from_mae(mae, num_voxels, window_size=cfg.data.window_size, temporal_attention=e.temporal_attention,
                               out_tokens=e.out_tokens, out_dim=e.out_dim)
    return ContrastiveModel(enc, init_head(cfg, clip))


def _stats(v) -> dict:
    v = np.asarray(v, float)
    return dict(mean=float(v.mean()), sd=float(v.std(ddof=1)) if len(v) > 1 else float("nan"), min=float(v.min()), max=float(v.max()))


def run(preset: str = "quick", inits: int = 10, seed: int = 0) -> dict:
    cfg = load_preset(preset)
    te = clip_arrays(cfg, "test", seed=seed)
    mae, clip = load_mae(cfg, seed), load_foundation(cfg, seed=seed).clip
    cap_cands, cap_target = unique_targets(te["text"])
    per = {"image_2way": [], "text_2way": []}
    for s in range(inits):
        emb = embed_fmri(mae_only(cfg, mae, clip, te["fmri"].shape[-1], s), te["fmri"])
        per["image_2way"].append(float(identification_nway(emb @ te["image"].T, 2, seed=seed).mean()))
        per["text_2way"].append(float(identification_nway(emb @ cap_cands.T, 2, target=cap_target, seed=seed).mean()))
    return dict(preset=preset, seed=seed, inits=inits, n_test=int(len(te["image"])), n_captions=int(len(cap_cands)),
                identification_trials=100, per_init=per, summary={k: _stats(v) for k, v in per.items()},
                commit=git_commit(ROOT), environment=environment())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--inits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="model seed of the MAE (and of 03's own draw)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    res = run(a.preset, a.inits, a.seed)
    out = a.out or ROOT / "benchmarks" / "results" / f"{a.preset}_mae_only_inits.json"
    write_json(res, out)
    for k, s in res["summary"].items():
        print(f"MAE only, {k}: mean {s['mean']:.3f}, sd {s['sd']:.3f}, {s['min']:.3f} to {s['max']:.3f} over {a.inits} inits")
    print(f"-> {out}")
    return res


if __name__ == "__main__":
    main()
