"""Wall time of a cold `mindvideo reproduce --preset quick` on a fresh clone, notebook by notebook.

Usage:  python benchmarks/quick_cold.py [--preset quick] [--jobs 1] [--work DIR] [--out FILE]
        python benchmarks/quick_cold.py --from-run DIR [--out FILE]

Clones the project's current commit into `--work` (default: a temporary folder), runs `mindvideo reproduce` there
with a fresh, empty `MINDVIDEO_CACHE` and `PYTHONPATH` set to the clone (so its kernels import the clone's package),
and writes `--out` (default `benchmarks/results/<preset>_cold_cpu.json`): the total wall time, each notebook's
`wall_s` from the run's `runs/<preset>/run.json`, its share of the total, the commit, the torch thread count and
the CPU. `--from-run DIR` only reads a clone where such a run has finished. The budgets of issue "Speed" are 1,200 s
for `quick` and 180 s for `smoke` on 2 CPU cores; `--jobs 2` runs two notebooks at once (`mindvideo reproduce
--jobs`). Run it on an otherwise idle machine (other processes on the same cores slow torch's threads down).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mindvideo.core import write_json
from mindvideo.paths import find_project
from mindvideo.provenance import environment

ROOT = find_project(Path(__file__).parent)
BUDGET_S = {"quick": 1200, "smoke": 180}  # issue "Speed": quick cold in 20 minutes, the smoke chain in 3


def summarise(run_json: Path, wall_s: float | None = None) -> dict:
    "Per-notebook wall times of a finished run, the largest first, with their share of the total."
    rec = json.loads(Path(run_json).read_text())
    nbs = {k: v["wall_s"] for k, v in rec["notebooks"].items() if v.get("status") == "ok" and not v.get("skipped")}
    total = wall_s if wall_s is not None else sum(nbs.values())
    return dict(preset=rec["preset"], wall_s=round(total, 1), sum_of_notebooks_s=round(sum(nbs.values()), 1),
                notebooks={k: dict(wall_s=v, share=round(v / total, 3)) for k, v in sorted(nbs.items(), key=lambda kv: -kv[1])})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--work", type=Path, default=None, help="folder for the clone (must not exist); default: a temporary one")
    ap.add_argument("--from-run", type=Path, default=None, help="a clone where the cold run has finished: only read it")
    ap.add_argument("--wall-s", type=float, default=None, help="with --from-run: the run's measured wall time (default: the sum of its notebooks)")
    ap.add_argument("--jobs", type=int, default=1, help="passed to `mindvideo reproduce --jobs` (notebooks at once, each with cpu_count // jobs threads)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    budget = BUDGET_S.get(a.preset.split("+")[0], BUDGET_S["quick"])
    wall = a.wall_s
    if a.from_run is None:
        work = a.work or Path(tempfile.mkdtemp(prefix="mindvideo-cold-")) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
        env = dict(os.environ, PYTHONPATH=str(work), MINDVIDEO_CACHE=tempfile.mkdtemp(prefix="mindvideo-cache-"))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mindvideo", "reproduce", "--preset", a.preset, "--jobs", str(a.jobs)], cwd=work, env=env, check=True)
        wall = time.perf_counter() - t0
        clone = work
    else:
        clone = a.from_run
    res = summarise(clone / "runs" / a.preset / "run.json", wall)
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    env = environment()
    res |= dict(commit=commit or "unknown", budget_s=budget, within_budget=res["wall_s"] <= budget, jobs=a.jobs,
                torch_threads=env["torch_threads"] if a.jobs == 1 else max(1, (os.cpu_count() or 1) // a.jobs),
                cpu=env["cpu"], cpu_count=os.cpu_count())
    out = a.out or ROOT / "benchmarks" / "results" / f"{a.preset}_cold_cpu.json"
    write_json(res, out)
    print(f"{a.preset} cold: {res['wall_s']:.0f} s (budget {budget} s, --jobs {a.jobs}) at {res['commit']}; largest: "
          + ", ".join(f"{k} {v['wall_s']:.0f} s" for k, v in list(res["notebooks"].items())[:4]) + f" -> {out}")
    return res


if __name__ == "__main__":
    main()
