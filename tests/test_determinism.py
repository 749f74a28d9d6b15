"""Same preset and seed, same bytes: every smoke stage and every smoke metrics file, computed twice in separate
processes with different hash seeds and caches. Timings are the only fields allowed to differ."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mindvideo.clips import category_names, sample_scene
from mindvideo.reproduce import copy_project

ROOT = Path(__file__).resolve().parents[1]


def _volatile(key: str) -> bool:
    return (key in ("seconds", "timings", "_name_or_path") or key.endswith(("_s", "_seconds", "_ms"))
            or key.startswith("ms_per") or "per_second" in key)


def _strip(o):
    "A JSON value without its timing fields."
    if isinstance(o, dict): return {k: _strip(v) for k, v in o.items() if not _volatile(k)}
    if isinstance(o, list): return [_strip(v) for v in o]
    return o


def _tree(folder: Path) -> dict:
    "{relative path: bytes, or the parsed JSON without timings} of every file under `folder` but locks."
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix == ".lock": continue
        rel = str(p.relative_to(folder))
        out[rel] = _strip(json.loads(p.read_text())) if p.suffix == ".json" else p.read_bytes()
    return out


def _env(cache: Path, hashseed: int) -> dict:
    return {**os.environ, "MINDVIDEO_CACHE": str(cache), "PYTHONHASHSEED": str(hashseed)}


def _assert_same_trees(a: dict, b: dict, what: str):
    assert sorted(a) == sorted(b), f"{what}: different files: {sorted(set(a) ^ set(b))}"
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"{what}: {len(differ)} of {len(a)} files differ between two runs: {differ[:10]}"


def test_tokenizer_is_the_same_in_two_processes(tmp_path):
    rng = np.random.default_rng(0)
    cats = category_names(12)  # the quick world's categories and its scene sampler's captions
    caps = [sample_scene(rng, int(rng.integers(len(cats))), cats, 6)["caption"] for _ in range(3000)]
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    code = ("import json, sys; from mindvideo.tokenizer import build_tokenizer; "
            "build_tokenizer(json.load(open(sys.argv[1])), sys.argv[2], max_length=24)")
    for i in (1, 2):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "caps.json"), str(tmp_path / f"tok{i}")],
                       env=_env(tmp_path / "cache", i), check=True, capture_output=True)
    files = sorted(p.name for p in (tmp_path / "tok1").iterdir())
    assert {"vocab.json", "merges.txt", "tokenizer.json"} <= set(files)
    for f in files:
        assert (tmp_path / "tok1" / f).read_bytes() == (tmp_path / "tok2" / f).read_bytes(), f"{f} differs"


def test_two_cold_smoke_reproductions_are_the_same(tmp_path):
    """Every notebook on smoke, twice, at once (one thread each), in separate processes, caches and hash seeds: the same
    metrics JSON and the same weights of every stage."""
    projs = [copy_project(tmp_path / f"p{i}", ROOT) for i in (1, 2)]  # copies: papermill runs in each nbs/, exports into each mindvideo/
    procs = [subprocess.Popen([sys.executable, "-m", "mindvideo", "reproduce", "--preset", "smoke"], cwd=p,
                              env={**_env(tmp_path / f"c{i}", i), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i, p in enumerate(projs, 1)]
    for p in procs:
        _, err = p.communicate(timeout=1500)
        assert p.returncode == 0, err.decode()[-8000:]
    a, b = ({k: v for k, v in _tree(p / "figures" / "smoke").items() if k.endswith(".json")} for p in projs)
    assert len(a) >= 10, sorted(a)
    assert all(a[k]["provenance"]["environment"]["torch_threads"] == 1 for k in a if k != "MANIFEST.json")
    _assert_same_trees(a, b, "figures/smoke/*.json")
    # every stage's artifacts too (world, MAE, foundation stand-ins, contrastive, co-training, classifiers, samples): same bytes
    stages = ("world", "mae", "foundation", "contrastive", "cotrain")
    a, b = ({k: v for k, v in _tree(tmp_path / f"c{i}").items() if k.split("/")[0] in stages} for i in (1, 2))
    assert all(any(k.startswith(f"{st}/") for k in a) for st in stages), sorted({k.split("/")[0] for k in a})
    assert any(k.endswith(".safetensors") for k in a)
    _assert_same_trees(a, b, "smoke stage caches")
