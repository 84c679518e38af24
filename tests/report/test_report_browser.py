"""The HTML report as a reader sees it: opened in headless Chromium (Debian's ``chromium``).

Checked in the browser: no console or resource error, every plot decodes, no figure or
table cell wraps (numbers stay on one line), no text below 10 px. Skipped, with the
reason, where Chromium is not installed (CI images without it).
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest
from _problems import REPO
from click.testing import CliRunner

from dnnpart.cli import main

CHROMIUM = Path("/usr/bin/chromium")
MLP = str(REPO / "examples" / "mlp" / "mlp.onnx")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"
)

_WATCH = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.target.src)),
                        true);
</script>"""

_CHECK = """<script>
window.addEventListener("load", () => {
  const lines = el => { const r = document.createRange(); r.selectNodeContents(el);
                        return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; };
  const cells = [...document.querySelectorAll("td:not(.note), th")];
  const texts = [...document.querySelectorAll("body *")].filter(e => e.childNodes.length &&
      [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
  document.body.dataset.check = JSON.stringify({
    errors: window.__errors,
    images: document.images.length,
    broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    wrapped: cells.filter(c => c.textContent.trim() && lines(c) > 1).map(c => c.textContent),
    smallest: Math.min(...texts.map(e => parseFloat(getComputedStyle(e).fontSize))),
  });
});
</script>"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_report_opens_cleanly_in_chromium(tmp_path):
    devices = tmp_path / "d.toml"
    devices.write_text(
        '[[device]]\nname = "jetson"\nspeed = "2TFLOPS"\nmemory = "8GiB"\n'
        '[[device]]\nname = "phone"\nspeed = "1TFLOPS"\nmemory = "64KiB"\n'
    )
    report = tmp_path / "report.html"
    res = CliRunner().invoke(
        main,
        ["leaderboard", MLP, "--devices", str(devices), "-p", "vertical,metis,pipeline",
         "--granularity", "both", "-o", str(report)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    page = report.read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("<head>", "<head>" + _WATCH, 1).replace("</body>", _CHECK))
    out = _chromium(
        ["--window-size=1280,2000", "--virtual-time-budget=10000", "--dump-dom",
         checked.as_uri()],
        tmp_path / "profile",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    match = re.search(r'data-check="([^"]*)"', out.stdout)
    assert match, out.stdout[-2000:]
    check = json.loads(html.unescape(match.group(1)))
    assert check["errors"] == []
    assert check["images"] == 6 and check["broken"] == []  # 3 plots x 2 granularities
    assert check["wrapped"] == []
    assert check["smallest"] >= 10
    console = [line for line in out.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    shot = _chromium(
        ["--window-size=1280,2400", f"--screenshot={tmp_path / 'report.png'}", report.as_uri()],
        tmp_path / "profile2",
    )
    assert shot.returncode == 0 and (tmp_path / "report.png").stat().st_size > 10_000
