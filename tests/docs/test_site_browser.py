"""The built documentation site, looked at in a real headless browser (Chromium).

Each page is loaded at 1280 x 900 from the file system (no server, no network) and a small script reports, once
MathJax has finished, what a reader would see: the number of typeset formulas and of formulas left as raw TeX,
MathJax errors, images that did not load, code blocks whose lines are clipped, and any resource fetched from
outside the site. Screenshots of the index, a concepts page and a tutorial page are written next to the report
(``$PHYSNODE_SCREENSHOTS`` if set, else a temporary folder).

The site is ``$PHYSNODE_SITE`` if set, else the one ``make docs`` built into ``site/`` when it is newer than every
source it is built from (as in CI, where ``make docs`` runs before the slow tests); otherwise it is built here
(about two minutes on two idle cores: the tutorials are executed). Chromium comes from Debian's ``chromium``
package (``.ci/run`` installs it); without it the test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
SOURCES = ["docs", "mkdocs.yml", "tutorials", "physnode", "datasets"]

# page -> (must show typeset maths, must show images)
PAGES = {
    "index.html": (False, False),
    "getting-started/index.html": (False, False),
    "concepts/solving/index.html": (True, False),
    "concepts/gradients/index.html": (True, False),
    "concepts/causal/index.html": (True, False),
    "concepts/design_blocks/index.html": (True, False),
    "concepts/sde_training/index.html": (True, False),
    "tutorials/index.html": (False, False),
    "tutorials/01_three_body_masses/index.html": (True, True),
    "tutorials/05_hamiltonian_lagrangian/index.html": (True, True),
    "api/solving/index.html": (False, False),
    "datasets/three_body/index.html": (False, False),
}
SCREENSHOTS = {
    "index": "index.html",
    "concepts_gradients": "concepts/gradients/index.html",
    "tutorial_01": "tutorials/01_three_body_masses/index.html",
}

# Runs after the site's scripts (it is appended at the end of <body>); writes its report into the DOM.
CHECK_SCRIPT = """
<script>
(async () => {
  const report = {};
  try {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
    report.mathjax = window.MathJax && MathJax.version ? MathJax.version : null;
    await Promise.all(Array.from(document.images).map((img) => img.complete ? null :
      new Promise((done) => { img.addEventListener("load", done); img.addEventListener("error", done); })));
    report.formulas = document.querySelectorAll("mjx-container").length;
    report.math_errors = document.querySelectorAll("mjx-merror").length;
    report.raw_tex = Array.from(document.querySelectorAll(".arithmatex"))
      .filter((el) => !el.querySelector("mjx-container")).map((el) => el.textContent.slice(0, 80));
    report.raw_dollars = Array.from(document.querySelectorAll(".jupyter-wrapper .jp-RenderedMarkdown"))
      .filter((el) => /\\$[^$\\s][^$]*\\$/.test(el.textContent)).map((el) => el.textContent.slice(0, 80));
    report.images = document.images.length;
    report.broken_images = Array.from(document.images).filter((img) => !(img.complete && img.naturalWidth > 0))
      .map((img) => img.src.slice(0, 80));
    report.clipped_code = Array.from(document.querySelectorAll(".md-typeset pre > code, .jp-InputArea pre"))
      .filter((el) => el.scrollWidth > el.clientWidth + 1).map((el) => el.textContent.slice(0, 80));
    report.external = performance.getEntriesByType("resource").map((r) => r.name)
      .filter((name) => !name.startsWith("file:") && !name.startsWith("data:"));
  } catch (err) { report.error = String(err); }
  document.body.setAttribute("data-site-check", JSON.stringify(report));
})();
</script>
"""


def _newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = ROOT / name
        files = (
            [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        )
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium in CI: .ci/run installs Debian's chromium package before the slow tests")
        pytest.skip("no Chromium here (apt-get install chromium)")
    if os.environ.get("PHYSNODE_SITE"):  # a site built beforehand, e.g. by `make docs -d ...`
        return Path(os.environ["PHYSNODE_SITE"])
    built = ROOT / "site"
    if (built / "index.html").is_file() and (built / "index.html").stat().st_mtime > _newest_source():
        return built
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PHYSNODE_DOCS_EXECUTE": "true"}
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)], cwd=ROOT, env=env, check=True
    )
    return out


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        command = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--allow-file-access-from-files",
            *args,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _report(site: Path, page: str) -> dict[str, Any]:
    source = (site / page).read_text(encoding="utf-8")
    probe = (site / page).with_name("_browser_check.html")  # same folder: the relative links still resolve
    probe.write_text(source.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    try:
        run = _chromium("--window-size=1280,900", "--virtual-time-budget=60000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r'data-site-check="([^"]*)"', run.stdout)
    assert found, f"{page}: no report from the browser (exit {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize(("page", "expect"), list(PAGES.items()), ids=list(PAGES))
def test_page_renders(site: Path, page: str, expect: tuple[bool, bool]) -> None:
    maths, images = expect
    report = _report(site, page)
    assert "error" not in report, report
    assert report["mathjax"] and report["mathjax"].startswith("3."), f"{page}: MathJax did not load: {report}"
    assert report["raw_tex"] == [] and report["raw_dollars"] == [], f"{page}: maths left as TeX: {report}"
    assert report["math_errors"] == 0, f"{page}: MathJax errors: {report}"
    if maths:
        assert report["formulas"] > 0, f"{page}: no typeset formula: {report}"
    if images:
        assert report["images"] > 0, f"{page}: no figure: {report}"
    assert report["broken_images"] == [], f"{page}: images that did not load: {report}"
    assert report["clipped_code"] == [], f"{page}: code clipped at 1280 px: {report}"
    assert report["external"] == [], f"{page}: fetched from outside the site: {report}"


def test_screenshots(site: Path, tmp_path: Path) -> None:
    folder = Path(os.environ.get("PHYSNODE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    for name, page in SCREENSHOTS.items():
        png = folder / f"{name}.png"
        run = _chromium(
            "--window-size=1280,1600", "--virtual-time-budget=60000", f"--screenshot={png}", (site / page).as_uri()
        )
        assert png.is_file(), f"no screenshot of {page} (exit {run.returncode}): {run.stderr[-2000:]}"
        # A blank page is a few kB of PNG; a rendered one with text, formulas or figures is far larger.
        assert png.stat().st_size > 50_000, f"{png} looks blank ({png.stat().st_size} bytes)"
