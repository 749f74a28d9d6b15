"""README's "Using the package": every Python block of that section runs, in order, in one namespace."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section_blocks(title: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def test_using_the_package_snippets_run(tmp_path, monkeypatch):
    blocks = _section_blocks("Using the package")
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # the snippets write clip0.gif and attention.png here
    ns = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i + 1}", "exec"), ns)
    assert (tmp_path / "clip0.gif").stat().st_size > 0 and (tmp_path / "attention.png").stat().st_size > 0
