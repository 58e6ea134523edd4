"""The documentation sources and build hooks: tutorials as pages, maths as LaTeX, nothing fetched from a CDN."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]


def _hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_docs_hook_{name}", ROOT / "docs" / "_hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tutorials = _hook("tutorials")
mathjax = _hook("mathjax")


def _notebook(path: Path, title: str) -> None:
    cells = [
        {
            "cell_type": "markdown",
            "id": "title",
            "metadata": {},
            "source": [f"# {title}\n", "\n", "Some maths: $a^2 + b^2$.\n"],
        },
        {
            "cell_type": "code",
            "id": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": ["x = 1"],
        },
    ]
    meta = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))


def test_repository_tutorials_are_numbered_without_gaps() -> None:
    names = [p.name for p in tutorials.notebooks()]
    assert names, "no tutorial notebooks found"
    assert [int(n[:2]) for n in names] == list(range(1, len(names) + 1))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["01_a.ipynb", "03_c.ipynb"], "without gaps or repeats"),
        (["01_a.ipynb", "01_b.ipynb"], "without gaps or repeats"),
        (["01_a.ipynb", "2_b.ipynb"], "NN_lowercase_words"),
    ],
    ids=["gap", "repeat", "bad-name"],
)
def test_wrong_numbering_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: list[str], message: str
) -> None:
    for name in files:
        _notebook(tmp_path / name, name)
    monkeypatch.setattr(tutorials, "TUTORIALS", tmp_path)
    with pytest.raises(PluginError, match=message):
        tutorials.notebooks()


def test_every_notebook_gets_a_nav_entry_and_a_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A notebook added to tutorials/ (here 02) appears in the nav and on the tutorials page with no other edit.
    _notebook(tmp_path / "01_first.ipynb", "01 — First")
    _notebook(tmp_path / "02_second_topic.ipynb", "02 — Second topic")
    monkeypatch.setattr(tutorials, "TUTORIALS", tmp_path)
    config = {"nav": [{"Home": "index.md"}, {"Tutorials": "tutorials.md"}]}
    tutorials.on_config(config)
    assert config["nav"][1] == {
        "Tutorials": ["tutorials.md", "tutorials/01_first.ipynb", "tutorials/02_second_topic.ipynb"]
    }
    page = SimpleNamespace(file=SimpleNamespace(src_uri="tutorials.md"))
    markdown = "# T\n\n| tutorial | what |\n|---|---|\n| [01 First](tutorials/01_first.ipynb) | first |\n\nMore text.\n"
    out = tutorials.on_page_markdown(markdown, page=page)
    rows = [line for line in out.splitlines() if line.startswith("| [")]
    assert rows == [
        "| [01 First](tutorials/01_first.ipynb) | first |",
        "| [02 — Second topic](tutorials/02_second_topic.ipynb) | |",
    ]
    assert out.rstrip().endswith("More text.")


def test_notebook_pages_load_no_cdn_script(tmp_path: Path) -> None:
    # nbconvert's HTML loads MathJax 2 and mermaid from a CDN; the hook removes both (the site serves MathJax).
    from mkdocs_jupyter.convert import nb2html

    _notebook(tmp_path / "01_x.ipynb", "01 — X")
    html = nb2html(str(tmp_path / "01_x.ipynb"), execute=False, custom_mathjax_url="")
    assert "cdnjs" in html  # what nbconvert writes; if this changes, the hook's pattern must be revisited
    page = SimpleNamespace(file=SimpleNamespace(src_uri="tutorials/01_x.ipynb"))
    cleaned = tutorials.on_post_page(html, page=page)
    assert "cdnjs" not in cleaned and "x-mathjax-config" not in cleaned
    assert "a^2 + b^2" in cleaned  # the content stays


def test_mathjax_is_served_from_the_installed_package() -> None:
    path = mathjax.bundle()
    assert path.name == "tex-svg-full.js" and path.stat().st_size > 1_000_000
    assert "MathJax" in path.read_text(encoding="utf-8", errors="replace")


# Symbols that mark a formula written in Unicode (the site renders maths with MathJax instead).
MATH_SYMBOLS = re.compile(r"[∂∫∑Σ√≈≤≥∇θλΛαβγδεηφψζξμσρτωΩ²³⁻¹ᵀ‖→∈]")


def _plain_code_blocks(text: str) -> list[tuple[int, str]]:
    """(line, body) of every fenced code block without a language or marked ``text``."""
    blocks: list[tuple[int, str]] = []
    fence: str | None = None
    start, body = 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence, start, body = stripped[3:].strip(), number, []
        elif fence is not None and stripped == "```":
            if fence in ("", "text"):
                blocks.append((start, "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
    return blocks


def test_no_formula_in_a_text_code_block() -> None:
    found = []
    for path in sorted((ROOT / "docs").rglob("*.md")):
        for line, body in _plain_code_blocks(path.read_text(encoding="utf-8")):
            if MATH_SYMBOLS.search(body):
                found.append(f"{path.relative_to(ROOT)}:{line}")
    assert not found, f"formulas in code blocks (write them as $$ LaTeX $$): {found}"
