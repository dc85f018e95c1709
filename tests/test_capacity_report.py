"""The HTML report on a capacity search (``mailgate capacity --report`` and ``mailgate
report DIR`` on its folder): one self-contained page holding capacity.json's figures."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mailgate.cli import main
from mailgate.sim.analysis.formatting import percent
from tests.conftest import ROOT
from tests.test_report import _parse

SMALL = ROOT / "tests" / "data" / "small-capacity.toml"


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("capacity")
    args = ["capacity", str(SMALL), "--workers", "2", "--max-replications", "4", "--quiet",
            "--report", "--out", str(out)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert main(args) == 0
    assert f"{out / 'report.html'}" in stdout.getvalue().splitlines()[-1]  # "Wrote …"
    return json.loads((out / "capacity.json").read_text(encoding="utf-8")), out


def test_capacity_report_holds_the_figures_and_fetches_nothing(
    searched: tuple[dict[str, Any], Path],
) -> None:
    d, out = searched
    page = _parse(out / "report.html")
    text = " ".join(page.text)
    assert all(url.startswith("#") for url in page.urls), [u for u in page.urls if u[:1] != "#"]
    assert page.svgs >= 1  # p95 against mailboxes with the SLO limit
    c = d["capacity"]
    lo, hi = c["band95"]
    assert f"Capacity: {c['mailboxes']:,} mailboxes" in text
    assert f"95 % band {lo:,} – {hi:,} mailboxes" in text
    today_ok = d["load_points"]["100%"]["ok"]
    verdict = "all objectives met" if today_ok else "OBJECTIVES MISSED"
    assert f"today's load ({d['today']['mailboxes']:,} mailboxes): {verdict}" in text
    # the verdict and the capacity come before the tables
    assert text.index("SLO verdict") < text.index("Capacity:") < text.index("Points run")
    b = d["binding_slo"]
    assert f"{b['name']} (limit" in text and f"at {b['at_mailboxes']:,} mailboxes" in text
    assert f"{d['bottleneck']['host']} CPU ({percent(d['bottleneck']['peak'])}" in text
    for p in d["points"]:
        assert f"{p['mailboxes']:,}" in text
    for share in d["load_points"]:
        assert share in text
    # intervals are clipped at 0: no negative latency on the page (a t-interval on two
    # replications reaches below 0)
    assert not re.search(r"(?<![\d:])-\d+(\.\d+)?(ms|s|min)\b", text)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium to render the page")
def test_capacity_report_renders_in_chromium_without_console_messages(
    searched: tuple[dict[str, Any], Path],
) -> None:
    """A real browser engine opens the page offline: it lays out and logs nothing."""
    _, out = searched
    run = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--enable-logging=stderr", "--v=0", "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "Capacity:" in run.stdout and run.stdout.count("<svg") >= 1
    assert [line for line in run.stderr.splitlines() if ":CONSOLE" in line] == []


def test_report_command_reads_a_capacity_folder(
    searched: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    _, out = searched
    target = tmp_path / "again.html"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(out), "--out", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == (out / "report.html").read_text(encoding="utf-8")
    # a capacity.json lacking the keys the report reads is a one-line error, exit 2
    broken = tmp_path / "capacity.json"
    broken.write_text(json.dumps({"capacity": {}, "points": []}), encoding="utf-8")
    assert main(["report", str(broken), "--out", str(tmp_path / "x.html")]) == 2
