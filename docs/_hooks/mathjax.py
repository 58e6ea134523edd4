"""MkDocs hook: serve MathJax from the installed Python package, never from a CDN.

The site renders mathematics with MathJax 3 (``pymdownx.arithmatex`` in generic mode writes ``\\(...\\)`` and
``\\[...\\]`` in ``arithmatex`` elements; the notebook pages keep their ``$...$``). Readers and CI may be
offline, so the script is copied into the site from the ``django-static-mathjax`` wheel (MathJax 3.2.2, pinned in
constraints.txt, part of the ``docs`` extra): ``tex-svg-full.js`` is one self-contained file (all TeX extensions,
SVG output with its glyphs built in) that loads nothing else. ``docs/assets/mathjax-config.js`` configures it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

SITE_PATH = "assets/mathjax/tex-svg-full.js"


def bundle() -> Path:
    """Path of MathJax's ``es5/tex-svg-full.js`` inside the installed ``mathjax`` package."""
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "static" / "mathjax" / "es5" / "tex-svg-full.js"
        if path.is_file():
            return path
    raise PluginError(
        "MathJax not found: the docs need the 'django-static-mathjax' package (it installs MathJax 3 as the "
        "'mathjax' package). Install the docs extra: pip install -c constraints.txt -e '.[docs]'."
    )


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    files.append(File.generated(config, SITE_PATH, abs_src_path=str(bundle())))
    return files
