"""`mindvideo train` under `accelerate launch` with two CPU processes (gloo): each trains on its share of every batch,
only the main process writes, and the result loads like a one-process run's (configs/accelerate/ promise this)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import mindvideo.contrastive
import mindvideo.foundation
from mindvideo.core import ConfigError, load_preset
from mindvideo.paths import stage_dir
from mindvideo.mae import MAEforFMRI, build_mae, load_mae, mae_history, split_subjects, subject_loader
from mindvideo.pretrain_fmri import load_pretrain_fmri
from mindvideo.train import row_digests


def _free_port()->int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def launch(*args, trace:Path, processes:int=2)->subprocess.CompletedProcess:
    "`accelerate launch` of `python -m mindvideo ARGS` on `processes` CPU processes that form one gloo process group."
    # `accelerate launch --cpu --num_processes 2` starts a single process unless MPI is set up; accelerate's torchrun
    # launcher (--multi_gpu) with ACCELERATE_USE_CPU=true starts two that join one gloo group (accelerate's MULTI_CPU)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "MINDVIDEO_TRACE": str(trace)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "mindvideo", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def test_mae_stage_on_two_processes(tmp_cache, tmp_path):
    p = launch("train", "--stage", "mae", "--preset", "smoke", trace=tmp_path/"trace")
    assert p.returncode == 0, p.stderr[-3000:]
    events = {r: [json.loads(line) for line in (tmp_path/"trace"/f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)}
    # 1. at every step, the two processes trained on the two halves of the batch a single process draws
    cfg = load_preset("smoke"); arrays = load_pretrain_fmri(cfg)  # cached by the run
    train_idx, _ = split_subjects(len(arrays), cfg.mae.holdout_subjects)
    loader = subject_loader([arrays[i] for i in train_idx], cfg.mae.batch_size, cfg.mae.epochs, seed=0)
    steps = [[e for e in events[r] if e["event"] == "batch" and e["desc"] == "MAE"] for r in (0, 1)]
    assert [e["step"] for e in steps[0]] == [e["step"] for e in steps[1]] == list(range(len(loader)))
    for batch, s0, s1 in zip(loader, *steps):
        assert s0["processes"] == s1["processes"] == 2 and abs(len(s0["rows"]) - len(s1["rows"])) <= 1
        assert s0["rows"] + s1["rows"] == row_digests(batch) and not set(s0["rows"]) & set(s1["rows"])
    # 2. only the main process wrote anything: the training checkpoint, the model, the data caches
    root = stage_dir(cfg, "mae", "data", "mae", seed=0)
    writes = [e for r in (0, 1) for e in events[r] if e["event"] == "write"]
    assert {e["rank"] for e in writes} == {0}
    assert {str(root/"ckpt"/"last"), str(root/"model"), str(root/"history.json")} <= {e["path"] for e in writes}
    assert not [f for f in root.rglob(".*")] and not list(root.parent.glob(f".{root.name}*"))  # no temporaries left behind
    # 3. the result loads and reads like a one-process run's: same model class and shapes, a full loss history
    mae = load_mae(cfg)  # from the cache: nothing trains here
    assert isinstance(mae, MAEforFMRI)
    fresh = build_mae(cfg, max(a.shape[1] for a in arrays)).state_dict()
    assert {k: v.shape for k, v in mae.state_dict().items()} == {k: v.shape for k, v in fresh.items()}
    assert all(torch.isfinite(v).all() for v in mae.state_dict().values())
    h = mae_history(cfg)["history"]
    assert h["step"][-1] == len(loader) - 1 and h["loss"][-1] < 0.8 * h["loss"][0]
    assert p.stdout.count("mae: ") == 2  # each process prints the stage's line


def test_stages_that_train_in_one_process_say_so(tmp_cache, monkeypatch):
    "The stand-in foundation and the contrastive stage refuse several processes with an error that names the way out."
    two = SimpleNamespace(num_processes=2, is_main_process=True)
    for mod in (mindvideo.contrastive, mindvideo.foundation): monkeypatch.setattr(mod, "distributed_state", lambda: two)
    with pytest.raises(ConfigError, match=r"foundation: expected one process .*--stage foundation.* got 2 processes"):
        mindvideo.foundation.load_foundation("smoke")
    with pytest.raises(ConfigError, match=r"contrastive: expected one process .*--stage contrastive.* got 2 processes"):
        mindvideo.contrastive.train_contrastive("smoke")
