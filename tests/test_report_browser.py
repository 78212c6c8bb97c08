"""`cellstore report` as a person sees it: rendered by headless Chromium, every plot drawn.

Needs Debian's `chromium` (`make sysdeps` installs it; CI runs that first); skips without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from conftest import REPO

WIDTH = 1280
# What each <img> looks like once the page has loaded, written into the DOM for --dump-dom.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => {
    const r = i.getBoundingClientRect();
    return {src: i.getAttribute("src"), complete: i.complete, naturalWidth: i.naturalWidth,
            naturalHeight: i.naturalHeight, left: r.left + scrollX, top: r.top + scrollY,
            width: r.width, height: r.height};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images, height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH: `make sysdeps` (apt-get install chromium) to run this test")


def browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    done = subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_report_renders_in_chromium_with_every_plot_visible(pipeline, tmp_path):
    browser = chromium()
    assert pipeline.first.returncode == 0, pipeline.first.stdout + pipeline.first.stderr
    out = tmp_path / "report"
    subprocess.run(
        [sys.executable, "-m", "cellstore", "report", "--out", str(out)]
        + ["--warehouse", str(pipeline.warehouse)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    page = out / "index.html"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 6
    probe_page = out / "probe.html"  # the same page plus the probe, beside its PNGs
    probe_page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))

    dom = browse(
        browser,
        tmp_path / "profile",
        f"--window-size={WIDTH},1000",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe_page.as_uri(),
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    images = probe["images"]
    assert sorted(i["src"] for i in images) == pngs  # every plot is on the page
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0, image  # it loaded
        assert image["width"] > 100 and image["height"] > 100, image  # it is shown

    shot = tmp_path / "shot.png"
    height = int(probe["height"]) + 20
    browse(
        browser,
        tmp_path / "profile",
        f"--window-size={WIDTH},{height}",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[1] == WIDTH and pixels.shape[0] >= height - 20
    assert pixels.std() > 0.05  # not a blank page
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02  # ink: text and plots
    for image in images:  # each plot's own region of the screenshot is drawn
        top, left = int(image["top"]), int(image["left"])
        region = pixels[top : top + int(image["height"]), left : left + int(image["width"])]
        assert region.size and region.std() > 0.02, image["src"]
        assert (region.mean(axis=2) < 0.9).mean() > 0.005, image["src"]
