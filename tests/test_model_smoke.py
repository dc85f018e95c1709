"""Every scenario file runs briefly; the commands work end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailgate.cli import main
from mailgate.sim.model.network import Model
from mailgate.sim.model.simulate import simulate
from mailgate.sim.model.statistics import OUTCOMES
from mailgate.sim.scenario.loading import load
from tests.test_model_laws import census

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "scenarios").glob("*.toml"))
SHORT = {"population.mailboxes": 300, "scenario.duration_h": 0.3, "scenario.warmup_h": 0.05}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_scenario_runs_briefly(path: Path) -> None:
    s = load(path, SHORT)
    d = simulate(s).to_dict()
    assert d["counts"]["generated"] > 0
    assert d["bottleneck"]["multiplier"] > 0
    json.dumps(d)  # serialisable as is (NaN aside, which the runner cleans)
    # no message lost or duplicated: the ones on their way are found where the parts keep them
    model = Model(s, 1)
    model.start()
    model.run()
    live = census(model)
    assert len({id(m) for m in live}) == len(live)
    c = model.counts
    on_the_way = sum(1 for m in live if m.counted)
    assert c["generated"] == sum(c[o] for o in OUTCOMES) + on_the_way


def test_run_command_writes_summary_json_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main([
        "run", str(ROOT / "scenarios" / "peak-hour.toml"), "--mailboxes", "500", "--hours", "0.5",
        "--seed", "3", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    for needle in (
        "Latency per flow",
        "Bottleneck (root):",
        "SLO",
        "verdict",
        "gateway4.1",
        "in flight",
    ):
        assert needle in text
    d = json.loads((out / "results.json").read_text())
    assert d["seed"] == 3
    assert d["mailboxes"] == 500
    assert d["scenario"]["population"]["mailboxes"] == 500
    assert "simpy" in d["versions"]
    for png in ("latency_cdf.png", "utilisation.png", "queues.png", "deferred.png"):
        assert (out / png).stat().st_size > 1000


def test_selftest_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["selftest", str(ROOT / "scenarios" / "loopback-testbed.toml"), "--json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("idle", "peak"):
        probe = r[key]
        assert probe["outcome"] == "mailbox"
        assert probe["in_mailbox_s"] > 0
        hosts = [h["host"].split(".")[0] for h in probe["hops"]]
        assert hosts[0] == "mailbox" and hosts[-1] == "mailbox"
        assert "dkim_sign" in probe["hops"][2]["stages"]


def test_missing_scenario_file_is_a_user_error() -> None:
    code = main(["run", str(ROOT / "scenarios" / "nonexistent.toml"), "--no-progress"])
    assert code == 2
