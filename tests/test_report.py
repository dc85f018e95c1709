"""``mailgate report``: one self-contained HTML file holding the figures of results.json,
checked by parsing it (no browser needed)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mailgate.cli import main
from mailgate.commands.report import default_out
from mailgate.sim.analysis.formatting import seconds
from mailgate.sim.analysis.html_report import write_report
from tests.conftest import ROOT


class _Page(HTMLParser):
    """Collects the text, every URL-valued attribute and the inline SVGs of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.urls: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.svgs += tag == "svg"
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value is not None:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    args = ["run", str(ROOT / "scenarios" / "peak-hour.toml"), "--hours", "0.5",
            "--replications", "2", "--no-plots", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_report_holds_the_figures_and_fetches_nothing(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    d = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    page = _parse(out)
    text = " ".join(page.text)
    assert all(url.startswith("#") for url in page.urls), [u for u in page.urls if u[:1] != "#"]
    assert page.svgs >= 3  # latency CDF, utilisation, queues
    verdict = "all objectives met" if all(o["ok"] for o in d["slo"]) else "OBJECTIVES MISSED"
    assert f"SLO verdict: {verdict}" in text
    # the verdict comes first, before the latency table
    assert text.index("SLO verdict") < text.index("Latency per flow")
    for spans in d["latency"].values():
        for v in spans.values():
            if v["count"]:
                for key in ("p50", "p95", "p99"):
                    assert seconds(v[key]) in text
                assert f"{v['count']:,}" in text
    for hid in d["hosts"]:
        assert hid in text
    assert f"{d['mailboxes']:,}" in text and str(d["seed"]) in text
    assert d["bottleneck"]["host"] in text
    assert f"{d['bottleneck']['multiplier']:.1f}×" in text


def test_default_output_sits_next_to_the_results(run_dir: Path) -> None:
    assert default_out([str(run_dir)]) == run_dir / "report.html"
    assert default_out([str(run_dir / "results.json")]) == run_dir / "report.html"
    assert default_out([str(run_dir), str(run_dir)]) == Path("report.html")


def test_several_runs_share_one_page(run_dir: Path, tmp_path: Path) -> None:
    d = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    other = dict(d, name="second-run")
    out = write_report([d, other], tmp_path / "both.html")
    text = " ".join(_parse(out).text)
    assert "peak-hour" in text and "second-run" in text


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2  # a folder without results.json
    (tmp_path / "results.json").write_text('{"name": "x"}', encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 2
    (tmp_path / "results.json").write_text("not json", encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("mailgate: error:") for line in err)
