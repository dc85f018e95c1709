"""A sweep in the HTML report: every point's row, the figures inline, nothing fetched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailgate.cli import main
from tests.test_report import _parse
from tests.test_sweep import MM1, RATE, SERVICE


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    args = ["sweep", str(MM1), "--set", f"{SERVICE}=0.004,0.008", "--set", f"{RATE}=40,80",
            "--hours", "0.02", "--replications", "2", "--workers", "1", "--quiet",
            "--no-plots", "--report", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


def test_sweep_report_has_every_point_and_its_figures(sweep_dir: Path) -> None:
    d = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    html = (sweep_dir / "report.html").read_text(encoding="utf-8")
    page = _parse(sweep_dir / "report.html")
    assert all(u.startswith("#") for u in page.urls)  # in-page links only: nothing fetched
    numeric = [m for m in d["metrics"] if m["kind"] in ("latency", "slo", "busiest")]
    assert page.svgs == len(numeric) >= 2  # one inline figure per numeric metric
    rows = html.split("<h3>Every point</h3>", 1)[1].split("</table>", 1)[0].count("<tr")
    assert rows == 1 + len(d["points"]) == 5  # the header and a row per point
    text = " ".join(page.text)
    for p in d["points"]:
        assert p["metrics"]["bottleneck"] in text
    assert f"{len(d['points'])} points" in text


def test_report_command_reads_a_sweep_folder(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(sweep_dir), "--out", str(out)]) == 0
    assert "Every point" in out.read_text(encoding="utf-8")


def test_a_broken_sweep_json_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"axes": [], "points": []}))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sweep.json" in err
