import os
import tempfile

import nbformat
import pytest

# Every test session computes into a fresh cache unless the caller chose one.
os.environ.setdefault("MINDVIDEO_CACHE", tempfile.mkdtemp(prefix="mindvideo-test-cache-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import matplotlib

matplotlib.use("Agg")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "A private, empty MINDVIDEO_CACHE for one test."
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_notebook(path, body:str):
    "A two-cell notebook for runner tests: the `parameters` cell every notebook has, then `body`."
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('preset = "smoke"\nseed = 0\nout_dir = "../figures"'); p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
