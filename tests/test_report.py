"""The run report: a self-contained page, checked in a real headless browser."""

import json
import re
import shutil
import subprocess

import pytest

from cdml.cli import main
from cdml.report import SECTIONS

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
# Appended to a copy of the page: records which sections exist and how many images decoded.
PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.probe = JSON.stringify({
    sections: [...document.querySelectorAll('section')].map(s => s.id),
    images: images.length, decoded: decoded});
});</script></body>"""


@pytest.fixture(scope="module")
def report(tiny_checkpoint):
    run = tiny_checkpoint.parent.parent
    argv = ["cluster", "--checkpoint", str(tiny_checkpoint), "--dataset", "digits", "--k", "3"]
    assert main([*argv, "--out", str(run / "clusters")]) == 0
    assert main(["report", "--run", str(run), "--max-items", "300"]) == 0
    return run / "report.html"


def test_the_report_is_one_page_without_network_references(report):
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert page.count("data:image/png;base64,") == 5  # curves, t-SNE, 2 grids, clusters


@pytest.mark.skipif(BROWSER is None, reason="needs Chromium (apt-get install chromium)")
def test_the_report_opens_in_headless_chromium_with_every_section(report, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE))
    dom = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["sections"] == list(SECTIONS)
    assert probe["images"] == 5 and probe["decoded"] == 5


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path)]) == 2
    assert "metrics.json: no such file" in capsys.readouterr().err
