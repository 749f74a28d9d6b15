"""The benchmark scripts' own logic, on hand-made inputs (the scripts themselves run for minutes to hours)."""
import importlib.util
from pathlib import Path

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
