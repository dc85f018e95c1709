"""``mailgate capacity`` on a scenario small enough to search in the tests: the answer
is checked by runs independent of the search (other seeds, replications pooled as
``mailgate run`` pools them): every SLO holds at 0.9× the capacity, one fails at 1.1×."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from mailgate.cli import main
from mailgate.sim.analysis.capacity import capacity, host_down_overrides, window_of
from mailgate.sim.analysis.capacity_points import FAIL, PASS, UNDECIDED, Point
from mailgate.sim.analysis.capacity_text import render
from mailgate.sim.analysis.parallel import executor
from mailgate.sim.model.simulate import simulate
from mailgate.sim.scenario.loading import load
from tests.conftest import ROOT

SMALL = ROOT / "tests" / "data" / "small-capacity.toml"
#: seeds the search never uses (it uses the scenario's seed + 0, 1, 2, ...)
CHECK_SEED = 4242


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One search through the command line, as a user runs it: its JSON and its folder."""
    out = tmp_path_factory.mktemp("capacity")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            ["capacity", str(SMALL), "--json", "--workers", "2", "--max-replications", "4",
             "--quiet", "--out", str(out)]
        )  # fmt: skip
    assert code == 0
    return json.loads(stdout.getvalue()), out


def _slo_verdicts(mailboxes: int) -> list[bool]:
    """Every SLO's verdict in a run of the peak window (4 replications pooled)."""
    base = load(SMALL)
    overrides = {**window_of(base).overrides(), "scenario.replications": 4}
    s = load(SMALL, {**overrides, "population.mailboxes": mailboxes})
    return [o["ok"] for o in simulate(s, seed=CHECK_SEED).to_dict()["slo"]]


def test_json_shape_and_files(searched: tuple[dict[str, Any], Path]) -> None:
    d, out = searched
    c = d["capacity"]
    assert isinstance(c["mailboxes"], int) and c["mailboxes"] > d["today"]["mailboxes"]
    assert c["msgs_per_s"] > 0
    lo, hi = c["band95"]
    assert lo <= c["mailboxes"] < hi
    assert d["binding_slo"]["name"] in {"inbound delivery", "internal delivery"}
    assert d["bottleneck"]["host"].startswith("gateway1.")  # the slow antivirus
    assert d["bottleneck"]["resource"] == "cpu"
    assert set(d["load_points"]) == {"80%", "100%", "120%"}
    assert all(p["verdict"] == PASS for p in d["load_points"].values())
    points = d["points"]
    assert [p["mailboxes"] for p in points] == sorted(p["mailboxes"] for p in points)
    assert {"mailboxes", "msgs_per_s", "replications", "verdict", "objectives"} <= set(points[0])
    assert all(2 <= p["replications"] <= d["max_replications"] for p in points)
    assert json.loads((out / "capacity.json").read_text()) == d
    assert (out / "capacity.png").stat().st_size > 0
    assert "Capacity:" in render(d)


def test_slo_holds_at_0_9_and_fails_at_1_1_of_the_capacity(
    searched: tuple[dict[str, Any], Path],
) -> None:
    mailboxes = searched[0]["capacity"]["mailboxes"]
    assert all(_slo_verdicts(round(0.9 * mailboxes)))
    assert not all(_slo_verdicts(round(1.1 * mailboxes)))


@pytest.mark.slow
def test_n_minus_1_table() -> None:
    with executor(workers=2) as ex:
        d = capacity(SMALL, ex, max_replications=2, tolerance=0.1, n_minus_1=True)
    rows = {r["gateway"]: r for r in d["n_1"]}
    assert set(rows) == {f"gateway{i}" for i in range(5)}
    g1 = rows["gateway1"]
    assert g1["host"] == "gateway1.0"
    # the twin carries the antivirus load alone (and senders wait out the connect timeout)
    assert 0 < g1["ratio"] < 0.75
    assert g1["headroom"] == pytest.approx(g1["mailboxes"] / d["today"]["mailboxes"])
    assert g1["survives"] == (g1["mailboxes"] >= d["today"]["mailboxes"])
    assert all(isinstance(r["survives"], bool) for r in rows.values())
    text = render(d)
    assert "today's load survives N-1: " in text


def test_host_down_keeps_the_scenarios_own_failures() -> None:
    base = load(ROOT / "scenarios" / "gateway1-host-down.toml")
    downs = host_down_overrides(base, "gateway3.0")["failures.host_down"]
    assert [d["host"] for d in downs] == ["gateway1.0", "gateway3.0"]
    s = load(ROOT / "scenarios" / "gateway1-host-down.toml", {"failures.host_down": downs})
    assert s.failures.host_down[1].start_h == 0.0


def _point(values: list[float], limit: float = 60.0) -> Point:
    runs = [{"objectives": [{"name": "x", "value": v, "limit": limit, "ok": v <= limit}],
             "msgs_per_s": 1.0, "utilisation": {}} for v in values]  # fmt: skip
    return Point(1, runs)


def test_verdict_at_95_percent() -> None:
    assert _point([10.0, 12.0]).verdict == PASS
    assert _point([100.0, 105.0]).verdict == FAIL
    assert _point([40.0, 80.0]).verdict == UNDECIDED
    assert _point([55.0]).verdict == UNDECIDED  # one replication: no interval yet
    assert _point([55.0, 56.0, 57.0, 58.0]).verdict == PASS
    assert not _point([50.0, 80.0]).ok


@pytest.mark.parametrize("window", ["25", "-1", "noon"])
def test_bad_window_is_exit_2(window: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["capacity", str(SMALL), "--window", window])
    assert e.value.code == 2
    assert "--window" in capsys.readouterr().err


def test_unknown_n_minus_1_gateway_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", str(SMALL), "--n-1", "gateway9", "--workers", "1"]) == 2
    assert "no gateway 'gateway9'" in capsys.readouterr().err
