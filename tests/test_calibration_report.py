"""The HTML page on a calibration: measured and modelled side by side, self-contained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailgate.calibration.outputs import write_outputs
from mailgate.cli import main
from tests.test_calibrate import TESTBED, synthetic_report
from tests.test_report import _parse


@pytest.fixture
def calibration_dir(tmp_path: Path) -> Path:
    report, _, measured, modelled = synthetic_report(tmp_path)
    write_outputs(report, measured, modelled, tmp_path)
    return tmp_path


def test_report_on_a_calibration_shows_both_sides_and_fetches_nothing(
    calibration_dir: Path,
) -> None:
    assert main(["report", str(calibration_dir)]) == 0
    page = _parse(calibration_dir / "report.html")
    text = " ".join(page.text)
    data = json.loads((calibration_dir / "calibration.json").read_text(encoding="utf-8"))
    assert all(u.startswith("#") for u in page.urls)  # in-page links only: nothing fetched
    assert page.svgs >= 1  # the latency-against-load figure, inline
    assert "TARGETS MISSED" in text  # the verdict the synthetic points earn
    sat = data["saturation"]
    assert f"{sat['measured']['throughput']:.1f}" in text and sat["measured"]["first_host"] in text
    assert f"{sat['modelled']['throughput']:.1f}" in text and sat["modelled"]["first_host"] in text
    for row in data["latency"]:  # every figure of calibration.json, both sides
        assert f"{row['measured_s'] * 1e3:.1f}" in text
        if row["modelled_s"] is not None:
            assert f"{row['modelled_s'] * 1e3:.1f}" in text
    for failure in data["failures"]:
        assert failure in text


def test_calibrate_report_flag_writes_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = synthetic_report(tmp_path)[0]
    monkeypatch.setattr("mailgate.calibration.calibrate.calibrate", lambda opts, log: report)
    args = ["calibrate", str(TESTBED), "--rates", "10,30", "--out", str(tmp_path), "--report"]
    assert main(args) == 3
    assert (tmp_path / "report.html").is_file()
    assert str(tmp_path / "report.html") in capsys.readouterr().out


def test_calibration_with_other_folders_or_broken_is_one_line_exit_2(
    calibration_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(calibration_dir), str(tmp_path)]) == 2
    assert "calibration" in capsys.readouterr().err
    broken = tmp_path / "b" / "calibration.json"
    broken.parent.mkdir()
    broken.write_text("{}")
    assert main(["report", str(broken.parent)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "calibration.json" in err
