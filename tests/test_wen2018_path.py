"""The whole wen2018 code path at toy size: every notebook, run by the papermill runner on the `wen2018_smoke` preset,
reads tiny assets written in exactly the real layouts (Wen 2018 arrays, HCP files, SD v1-5 / CLIP / ViT / VideoMAE
folders) through the real loaders."""
import json
from pathlib import Path

from mindvideo.reproduce import reproduce
from mindvideo.wen2018 import make_tiny_assets

ROOT = Path(__file__).resolve().parents[1]


def test_wen2018_smoke_runs_every_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path / "cache"))
    make_tiny_assets(tmp_path / "data")
    rec = reproduce("wen2018_smoke", project=ROOT, force=True, every=True)
    assert {k: v["status"] for k, v in rec["notebooks"].items()} == {k: "ok" for k in rec["notebooks"]}
    man = json.loads((ROOT / "figures" / "wen2018_smoke" / "MANIFEST.json").read_text())["outputs"]
    assert any(f.startswith("06_") for f in man) and any(f.startswith("05_") for f in man)
