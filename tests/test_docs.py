"""The documentation site: built offline into a temporary folder, a page per notebook, every public name once."""
import importlib
from pathlib import Path

from mindvideo.paths import list_notebooks
from mindvideo.docs import build_docs

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "mindvideo").glob("*.py") if not p.stem.startswith("_"))


def test_docs_site(tmp_path):
    site = build_docs(tmp_path / "site", project=ROOT, progress=False)
    pages = {p.name: p.read_text() for p in site.glob("*.html")}
    assert sorted(pages) == sorted(["index.html"] + [p.stem + ".html" for p in list_notebooks(ROOT / "nbs")])
    text = "".join(pages.values())
    n = 0
    for mod in MODULES:
        for name in getattr(importlib.import_module(f"mindvideo.{mod}"), "__all__", []):
            assert text.count(f"<div class='api' id='api-mindvideo.{mod}.{name}'>") == 1, f"mindvideo.{mod}.{name}"
            n += 1
    assert n > 100
    assert str(ROOT) not in text and str(tmp_path) not in text  # no local path on any page
    for p, html in pages.items():  # every figure a page shows was copied into the site
        for src in (s.split("'")[0] for s in html.split("<img src='")[1:]):
            assert (site / src).is_file(), f"{p}: {src}"
