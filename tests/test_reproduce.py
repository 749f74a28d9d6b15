"""The papermill runner on a throw-away project with two tiny notebooks."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import write_notebook
from mindvideo.reproduce import NotebookFailed, reproduce, select_notebooks, list_notebooks

ROOT = Path(__file__).resolve().parents[1]


_nb = write_notebook


@pytest.fixture
def project(tmp_path):
    (tmp_path / "nbs").mkdir(); (tmp_path / "mindvideo").mkdir()
    shutil.copy(ROOT / "settings.ini", tmp_path / "settings.ini")
    (tmp_path / "README.md").write_text("x\n<!-- results:start -->\n<!-- results:end -->\n")
    save = ("from mindvideo.provenance import save_metrics\n"
            "save_metrics({'v': 1}, 'v', nb='{NB}', preset=preset, seed=seed, out_dir=out_dir)")
    _nb(tmp_path / "nbs" / "01_a.ipynb", save.replace("{NB}", "01_a"))
    _nb(tmp_path / "nbs" / "02_b.ipynb", save.replace("{NB}", "02_b"))
    return tmp_path


def test_runs_records_and_skips(project):
    rec = reproduce("smoke", project=project)
    assert [v["status"] for v in rec["notebooks"].values()] == ["ok", "ok"]
    assert (project / "runs" / "smoke" / "01_a.ipynb").exists()
    assert list(rec["notebooks"]["01_a"]["artifacts"]) == ["01_v.json"]
    run = json.loads((project / "runs" / "smoke" / "run.json").read_text())
    assert run["notebooks"]["02_b"]["parameters"]["preset"] == "smoke"
    rec = reproduce("smoke", project=project)
    assert all(v["skipped"] for v in rec["notebooks"].values())
    (project / "figures" / "smoke" / "02_v.json").unlink()  # a missing output makes it stale
    rec = reproduce("smoke", project=project)
    assert [v["skipped"] for v in rec["notebooks"].values()] == [True, False]
    rec = reproduce("smoke", project=project, only=["01"], force=True)
    assert rec["notebooks"]["01_a"]["skipped"] is False


def test_stops_at_first_failure_naming_cell(project):
    _nb(project / "nbs" / "01_a.ipynb", "raise ValueError('boom')\nfrom mindvideo.provenance import save_metrics\nsave_metrics({}, 'v', nb='01_a', preset=preset, seed=seed, out_dir=out_dir)")
    with pytest.raises(NotebookFailed, match=r"01_a.ipynb failed in cell 2 .*ValueError: boom"):
        reproduce("smoke", project=project)
    run = json.loads((project / "runs" / "smoke" / "run.json").read_text())
    assert run["notebooks"]["01_a"]["status"] == "failed" and "02_b" not in run["notebooks"]


def test_a_kernel_that_dies_before_its_first_reply_is_started_again(project, monkeypatch):
    "Two kernels started at once can race for a port; nothing ran, so run_notebook starts it again, a few times at most."
    import papermill as pm
    real, calls = pm.execute_notebook, []
    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1: raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)
    monkeypatch.setattr(pm, "execute_notebook", flaky)
    with pytest.warns(RuntimeWarning, match=r"01_a.ipynb: the 'python3' kernel failed to start .* again \(2 of 3\)"):
        rec = reproduce("smoke", project=project, only=["01"])
    assert rec["notebooks"]["01_a"]["status"] == "ok" and len(calls) == 2
    def dead(*args, **kwargs): calls.append(1); raise RuntimeError("Kernel died before replying to kernel_info")
    monkeypatch.setattr(pm, "execute_notebook", dead); calls.clear()
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="Kernel died"):
        reproduce("smoke", project=project, only=["01"], force=True)
    assert len(calls) == 3  # then it gives up
    def other(*args, **kwargs): calls.append(1); raise RuntimeError("something else")
    monkeypatch.setattr(pm, "execute_notebook", other); calls.clear()
    with pytest.raises(RuntimeError, match="something else"):
        reproduce("smoke", project=project, only=["01"], force=True)
    assert len(calls) == 1  # any other error is not retried


def test_notebooks_that_write_nothing_run_only_when_asked(project):
    _nb(project / "nbs" / "03_tool.ipynb", "x = 1")  # a chapter on a tool: no figure, no metric
    rec = reproduce("smoke", project=project)
    assert list(rec["notebooks"]) == ["01_a", "02_b"]
    assert "03_tool" in reproduce("smoke", project=project, every=True)["notebooks"]
    assert not reproduce("smoke", project=project, only=["03"], force=True)["notebooks"]["03_tool"]["skipped"]


def test_select():
    nbs = list_notebooks(ROOT / "nbs")
    assert select_notebooks(nbs, start="00a")[0].stem == "00a_reproduce"


def test_jobs_run_notebooks_at_once_after_their_inputs(project, monkeypatch):
    import os
    import mindvideo.reproduce as rp
    slow = ("import time, os; time.sleep(3)\nfrom mindvideo.provenance import save_metrics\n"
            "save_metrics({'threads': os.environ.get('OMP_NUM_THREADS')}, 'v', nb='01_a', preset=preset, seed=seed, out_dir=out_dir)")
    _nb(project / "nbs" / "01_a.ipynb", slow)
    reads = ("import json, pathlib\nassert (pathlib.Path(out_dir) / preset / '01_v.json').is_file(), 'started before 01_a ended'\n"
             "from mindvideo.provenance import save_metrics\nsave_metrics({'v': 3}, 'v', nb='03_c', preset=preset, seed=seed, out_dir=out_dir)")
    _nb(project / "nbs" / "03_c.ipynb", reads)
    monkeypatch.setattr(rp, "AFTER", {"03_c": ("01_a",)})
    before = os.environ.get("OMP_NUM_THREADS")
    rec = reproduce("smoke", project=project, jobs=2)
    assert [rec["notebooks"][k]["status"] for k in ("01_a", "02_b", "03_c")] == ["ok", "ok", "ok"]
    threads = json.loads((project / "figures" / "smoke" / "01_v.json").read_text())["metrics"]["threads"]
    assert threads == str(max(1, (os.cpu_count() or 1) // 2)) and os.environ.get("OMP_NUM_THREADS") == before
    with pytest.raises(Exception, match="jobs: expected >= 1"): reproduce("smoke", project=project, jobs=0)
