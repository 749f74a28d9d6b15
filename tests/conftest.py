import os
import tempfile

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
