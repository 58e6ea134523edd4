"""MkDocs hook: the notebooks of ``tutorials/`` as pages of the site, executed at build time.

* Every ``tutorials/NN_*.ipynb`` of the repository becomes a page ``tutorials/NN_*/`` and an entry of the
  "Tutorials" section of the navigation, in number order: a new notebook needs no edit of ``mkdocs.yml``.
* With ``PHYSNODE_DOCS_EXECUTE=true`` (``make docs``, hence CI) the notebooks are executed here, at the start of
  the build, two at a time (one kernel per core of a CI machine; ``PHYSNODE_DOCS_JOBS`` changes it), each in
  ``tutorials/`` as ``pytest --nbmake`` runs it; the mkdocs-jupyter plugin then renders the executed copies with
  their outputs and figures. A failing notebook fails the build. Without it (a plain ``mkdocs build``, a quick
  strict check) the pages show the notebooks unexecuted.
* The numbers must run 01, 02, ... without gaps or repeats; otherwise the build fails and says which are wrong.
* ``docs/tutorials.md`` links each notebook; a notebook it does not link yet gets a row (its title) appended to
  the table, so the page never misses one.
* nbconvert's HTML loads MathJax 2 and mermaid from a CDN; those scripts are removed from the notebook pages,
  which use the site's own MathJax (``docs/_hooks/mathjax.py``) like every other page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
_NAME = re.compile(r"^(?P<number>\d{2})_[a-z0-9_]+\.ipynb$")
_TUTORIALS_PAGE = "tutorials.md"
_NAV_TITLE = "Tutorials"

# nbconvert's own MathJax 2 loader and configuration, and its mermaid module script (both from a CDN).
_CDN_SCRIPTS = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->"
    r"|<script type=\"module\">(?:(?!</script>).)*?cdnjs(?:(?!</script>).)*?</script>",
    re.DOTALL,
)


def notebooks() -> list[Path]:
    """The tutorial notebooks in number order; raises if a name or the numbering is wrong."""
    paths = sorted(TUTORIALS.glob("*.ipynb"))
    bad = [p.name for p in paths if not _NAME.match(p.name)]
    if bad:
        raise PluginError(
            f"tutorial notebooks must be named NN_lowercase_words.ipynb; got {bad}. Rename them, e.g. "
            "'12_my_topic.ipynb'."
        )
    numbers = [int(_NAME.match(p.name).group("number")) for p in paths]  # type: ignore[union-attr]
    expected = list(range(1, len(paths) + 1))
    if numbers != expected:
        raise PluginError(
            f"tutorial numbers must run 01..{len(paths):02d} without gaps or repeats; got "
            f"{[f'{n:02d}' for n in numbers]}. Renumber the notebooks in tutorials/."
        )
    return paths


def title(path: Path) -> str:
    """The notebook's first Markdown heading (``# 01 — Title``), else its file name."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return path.stem


def _uri(path: Path) -> str:
    return f"tutorials/{path.name}"


def on_config(config: Any, **kwargs: Any) -> Any:
    """Replace the "Tutorials" nav entry by a section: the overview page, then every notebook in order."""
    pages: list[Any] = [_TUTORIALS_PAGE, *(_uri(p) for p in notebooks())]
    nav = config["nav"]
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and list(entry) == [_NAV_TITLE]:
            nav[i] = {_NAV_TITLE: pages}
            return config
    raise PluginError(f"mkdocs.yml's nav has no '{_NAV_TITLE}: {_TUTORIALS_PAGE}' entry for the tutorial pages.")


_EXECUTED: list[Path] = []  # the temporary folder of this build's executed copies, removed after the build


def _execute(path: Path, out: Path) -> None:
    """Execute notebook ``path`` (working folder: its own) and write the executed copy into ``out``."""
    command = [
        sys.executable,
        "-m",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        "--ExecutePreprocessor.timeout=1800",
        "--ExecutePreprocessor.kernel_name=python3",
        f"--output-dir={out}",
        str(path),
    ]
    for attempt in range(2):
        run = subprocess.run(command, cwd=path.parent, capture_output=True, text=True, check=False)
        if run.returncode == 0 and (out / path.name).is_file():
            return
        # Two kernels starting at the same moment can collide on their TCP ports; the kernel then dies at once.
        if attempt == 0 and "Kernel died before replying to kernel_info" in run.stderr:
            continue
        break
    errors = [line for line in run.stderr.splitlines() if "Error" in line or "error" in line]
    raise PluginError(
        f"executing {path.relative_to(ROOT)} failed (exit {run.returncode}): {' | '.join(errors[-5:])}\n"
        f"{run.stderr[-3000:]}"
    )


def _execute_all(paths: list[Path]) -> Path:
    """Execute ``paths`` in parallel; returns the folder whose ``tutorials/`` holds the executed copies."""
    root = Path(tempfile.mkdtemp(prefix="physnode-docs-"))
    _EXECUTED.append(root)
    out = root / "tutorials"
    out.mkdir()
    jobs = int(os.environ.get("PHYSNODE_DOCS_JOBS", "2"))
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))  # threads only wait: each kernel is a process
    try:
        futures = []
        for i, path in enumerate(paths):
            futures.append(pool.submit(_execute, path, out))
            if i < jobs:
                time.sleep(2.0)  # the first kernels start a little apart (see _execute)
        for future in futures:
            future.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # the notebooks not started yet are not run
        shutil.rmtree(root, ignore_errors=True)
        raise
    pool.shutdown()
    return root


def _execute_enabled() -> bool:
    """``PHYSNODE_DOCS_EXECUTE`` is true (``make docs`` and CI set it): a plain ``mkdocs build`` stays quick."""
    return os.environ.get("PHYSNODE_DOCS_EXECUTE", "").strip().lower() in ("1", "true", "yes", "on")


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    paths = notebooks()
    source = _execute_all(paths) if _execute_enabled() else ROOT
    # Plain Files rooted at the repository or at the executed copies (not File.generated, whose source path
    # mkdocs-jupyter cannot see); mkdocs-jupyter recognises them by the ``tutorials/*.ipynb`` pattern.
    for path in paths:
        files.append(File(_uri(path), str(source), config["site_dir"], use_directory_urls=config["use_directory_urls"]))
    return files


def on_post_build(**kwargs: Any) -> None:
    while _EXECUTED:
        shutil.rmtree(_EXECUTED.pop(), ignore_errors=True)


def on_build_error(**kwargs: Any) -> None:
    on_post_build()


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Append a table row to docs/tutorials.md for every notebook it does not link yet."""
    if page.file.src_uri != _TUTORIALS_PAGE:
        return markdown
    missing = [p for p in notebooks() if f"({_uri(p)})" not in markdown]
    if not missing:
        return markdown
    lines = markdown.splitlines()
    last_row = max((i for i, line in enumerate(lines) if line.startswith("| [")), default=None)
    if last_row is None:
        raise PluginError(f"docs/{_TUTORIALS_PAGE} has no table of tutorials ('| [NN title](tutorials/...) |' rows).")
    rows = [f"| [{title(p)}]({_uri(p)}) | |" for p in missing]
    return "\n".join([*lines[: last_row + 1], *rows, *lines[last_row + 1 :]]) + "\n"


def on_post_page(output: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri.startswith("tutorials/") and page.file.src_uri.endswith(".ipynb"):
        return _CDN_SCRIPTS.sub("", output)
    return output
