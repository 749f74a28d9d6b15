"""Project hygiene: modules import, notebooks are clean, the package matches the notebooks, presets validate."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from papermill.translators import PythonTranslator

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
MODULES = sorted(p.stem for p in (ROOT / "mindvideo").glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("mod", MODULES)
def test_module_imports_in_fresh_interpreter(mod):
    r = subprocess.run([sys.executable, "-c", f"import mindvideo.{mod}"], capture_output=True, text=True, cwd=ROOT / "tests")
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.name)
def test_notebook_is_clean(nb):
    data = json.loads(nb.read_text())
    code = [c for c in data["cells"] if c["cell_type"] == "code"]
    assert not [c for c in code if c.get("outputs")], f"{nb.name}: committed outputs (run nbdev_clean)"
    assert not [c for c in code if c.get("execution_count")], f"{nb.name}: execution counts (run nbdev_clean)"
    params = [c for c in data["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{nb.name}: {len(params)} cells tagged parameters, expected 1"
    src = "".join(params[0]["source"])
    for name in ("preset", "seed", "out_dir", "overrides"):
        assert f"{name} =" in src, f"{nb.name}: parameters cell lacks {name}"
    # papermill must parse every line, or it warns on every run
    assert [q.name for q in PythonTranslator.inspect({"source": src})] == ["preset", "seed", "out_dir", "overrides"], f"{nb.name}: papermill cannot parse the parameters cell"
    assert nb.stat().st_size < 60_000, f"{nb.name}: {nb.stat().st_size} bytes, expected < 60 KB (split it at a seam: a notebook is a chapter of one idea)"
    assert "".join(code[0]["source"]).startswith("#| default_exp"), f"{nb.name}: first cell must be #| default_exp"


def test_nbdev_export_leaves_git_clean():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    before = subprocess.run(["git", "status", "--porcelain", "--", "mindvideo"], cwd=ROOT, capture_output=True, text=True).stdout
    r = subprocess.run(["nbdev_export"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    after = subprocess.run(["git", "status", "--porcelain", "--", "mindvideo"], cwd=ROOT, capture_output=True, text=True).stdout
    assert before == after, f"nbdev_export changed the package: the notebooks and mindvideo/ are out of step:\n{after}"
