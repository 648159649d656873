"""`report.html`: written at the end of every run and by `synth report`, one self-contained
page whose sections and figures render in a real headless Chromium, Hangul included."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.report import hangul_font, write_report

SECTIONS = (
    "summary",
    "yield",
    "rejections",
    "dedup",
    "lengths",
    "diversity",
    "style",
    "refusals",
    "spend",
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: as root, with no network: the flags that keep Chromium from reaching out
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def test_a_run_writes_a_self_contained_report_with_every_section(template_run: Path) -> None:
    html = (template_run / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert "http://" not in html and "https://" not in html, "nothing is fetched from elsewhere"
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', html)
    assert len(images) >= 6, "yield, rejections, dedup, lengths, diversity and style figures"
    assert "crime_advice" in html and "over_quota" in html
    assert "존댓말" in html, "speech levels are named in Korean"


def test_figures_draw_hangul_with_an_installed_font(template_run: Path, tmp_path: Path) -> None:
    """With a Hangul font installed (Debian's fonts-nanum in CI), no glyph is missing from any
    figure; matplotlib warns about each one it cannot draw."""
    if hangul_font() is None:
        pytest.skip("no Hangul font installed (apt-get install fonts-nanum)")
    copy = tmp_path / "run"
    shutil.copytree(template_run, copy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(copy)
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not missing, missing[:3]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(template_run: Path, tmp_path: Path) -> None:
    """The page loads in a real browser: every figure decodes (the page counts them on load),
    every section is in the rendered DOM, and the screenshot is not a blank page."""
    url = (template_run / "report.html").resolve().as_uri()
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*common, "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    shown = re.search(r'data-figures-shown="(\d+)"', dom)
    total = re.search(r'data-figures="(\d+)"', dom)
    assert shown and total, "the page's load handler ran"
    assert int(shown.group(1)) == int(total.group(1)) >= 6, "every figure decoded"
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [*common, "--window-size=1200,3000", f"--screenshot={screenshot}", url],
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float32)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 20, "text and figures, not an empty page"
    assert (pixels < 128).mean() > 0.02, "enough dark pixels for text and plots"


def test_synth_report_rewrites_the_page_and_refuses_a_non_run(
    template_run: Path, tmp_path: Path, cli: Any
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(template_run, copy)
    (copy / "report.html").unlink()
    result = cli("report", copy)
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").exists() and f"wrote {copy / 'report.html'}" in result.stdout
    bad = cli("report", tmp_path / "nothing-here")
    assert bad.exit_code == 2
    assert "not a run directory (no run.json)" in bad.stderr
