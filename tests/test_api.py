"""The public Python API (``mailgate.api``) gives what the command line gives: the same
results.json for the same seed, the same capacity.json, comparison and solver answer;
overrides reach the scenario; ``import mailgate`` does not load the API until asked."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mailgate
from mailgate import api
from mailgate.cli import main
from tests.conftest import ROOT

PEAK_HOUR = ROOT / "scenarios" / "peak-hour.toml"
SMALL = ROOT / "tests" / "data" / "small-capacity.toml"
VOLATILE = ("wall_s", "versions")  # the only keys two equal runs may differ in


def _cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


def _stable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli")
    code, _ = _cli(["run", str(PEAK_HOUR), "--hours", "0.25", "--seed", "7", "--no-plots",
                    "--no-progress", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def test_run_gives_the_clis_results_json(cli_run: Path, tmp_path: Path) -> None:
    r = mailgate.run(mailgate.load(PEAK_HOUR, hours=0.25), seed=7, out=tmp_path, plots=True)
    cli = json.loads((cli_run / "results.json").read_text(encoding="utf-8"))
    written = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert _stable(written) == _stable(cli)
    assert written == json.loads(r.json)
    # the files listed are the files on disk; the plots are PNG images
    assert set(r.files) == {p for p in tmp_path.iterdir() if p.is_file()}
    assert r.plots and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in r.plots)
    assert r.report is None
    assert r.latency("inbound") == cli["latency"]["inbound"]["accepted_to_mailbox"]["p95"]
    assert r.slo_ok == all(o["ok"] for o in cli["slo"])


def test_run_without_out_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = api.run("peak-hour", hours=0.1, seed=3, mailboxes=2000)
    assert list(tmp_path.iterdir()) == []
    assert r.out is None and r.files == ()
    assert r.results["mailboxes"] == 2000 and r.results["measured_s"] == pytest.approx(360)
    assert r.summary.startswith(r.name) or r.name in r.summary.splitlines()[0]


def test_load_overrides_reach_the_scenario() -> None:
    s = api.load(
        "peak-hour",
        mailboxes=1234,
        hours=0.5,
        gateways__gateway1__stages__antivirus__cpu_s=0.3,
        **{"workload.spam_share": 0.5},
    )
    assert s.population.mailboxes == 1234
    assert s.scenario.duration_h == 0.5
    assert s.gateways["gateway1"].stages["antivirus"].cpu_s.mean == pytest.approx(0.3)
    assert s.workload.spam_share == 0.5
    # overrides on a loaded Scenario give what the loader gives from the file
    again = api.load(api.load("peak-hour"), mailboxes=1234, hours=0.5,
                     gateways__gateway1__stages__antivirus__cpu_s=0.3,
                     **{"workload.spam_share": 0.5})  # fmt: skip
    assert again == s
    # the host template reaches the hosts of an already loaded scenario as from the file
    one_core = api.load(api.load("peak-hour"), gateways__gateway1__host__cores=1)
    assert one_core == api.load("peak-hour", gateways__gateway1__host__cores=1)
    assert [h.cores for h in one_core.gateways["gateway1"].hosts] == [1, 1]
    with pytest.raises(api.UserError, match="mailboxez"):
        api.load("peak-hour", **{"population.mailboxez": 3})


def test_compare_same_seed_and_a_regression(cli_run: Path, tmp_path: Path) -> None:
    same = api.compare(cli_run, api.run(PEAK_HOUR, hours=0.25, seed=7))
    assert not same.regression and same.exit_code == 0 and same.regressions == []
    code, text = _cli(["compare", str(cli_run), str(cli_run), "--json"])
    assert code == 0
    assert json.loads(text) == json.loads(api.compare(cli_run, cli_run).json)
    # gateway1's antivirus twice as slow on one core per host: mail waits far longer
    base = api.run(SMALL, hours=0.25, seed=1)
    slow = api.run(api.load(SMALL, gateways__gateway1__stages__antivirus__cpu_s=6.0), seed=1)
    worse = api.compare(base, slow)
    assert worse.regression and worse.exit_code == 4
    assert slow.latency("inbound") > base.latency("inbound")
    assert any(r.startswith("latency inbound") for r in worse.regressions)


def test_capacity_of_a_scenario_object_equals_the_clis(tmp_path: Path) -> None:
    args = ["capacity", str(SMALL), "--json", "--workers", "2", "--max-replications", "4",
            "--quiet", "--out", str(tmp_path / "cli")]  # fmt: skip
    code, text = _cli(args)
    assert code == 0
    cli = json.loads(text)
    r = api.capacity(api.load(SMALL), workers=2, max_replications=4, out=tmp_path / "api")
    assert _stable(r.data) == _stable(cli)
    assert r.mailboxes == cli["capacity"]["mailboxes"] and r.found
    lo, hi = r.band95
    assert lo <= r.mailboxes < (hi or r.mailboxes + 1)
    assert [p.name for p in r.files] == ["capacity.json", "capacity.png"]
    assert json.loads((tmp_path / "api" / "capacity.json").read_text()) == r.data
    assert isinstance(api.read(tmp_path / "api"), api.CapacityResult)


def test_solve_equals_the_cli() -> None:
    code, text = _cli(["solve", str(PEAK_HOUR), "--json"])
    assert code == 0
    assert json.loads(text) == json.loads(api.solve(PEAK_HOUR).json)


def test_read_a_calibration() -> None:
    c = api.read(ROOT / "notebooks" / "data")
    assert isinstance(c, api.Calibration)
    raw = json.loads((ROOT / "notebooks" / "data" / "calibration.json").read_text())
    assert len(c.latency) == len(raw["latency"]) and c.ok == raw["ok"]


def test_import_mailgate_loads_the_api_only_when_asked() -> None:
    probe = (
        "import sys, mailgate\n"
        "before = 'mailgate.api' in sys.modules or 'mailgate.sim.model' in sys.modules\n"
        "s = mailgate.load('peak-hour')\n"
        "print(before, 'mailgate.api' in sys.modules, 'run' in dir(mailgate))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True)  # fmt: skip
    assert run.stdout.split() == ["False", "True", "True"]
    with pytest.raises(AttributeError):
        _ = mailgate.no_such_name  # type: ignore[attr-defined]
