"""``mailgate sweep``: a 2 × 3 grid on the M/M/1 textbook scenario, run in local worker
processes and on a Dask cluster (a LocalCluster of two worker processes) with the same
results; every point against the M/M/1 formulas; bad flags are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailgate.cli import main
from mailgate.sim.analysis.queueing import mmc_mean_response
from mailgate.sim.analysis.sweep_grid import parse_value, split_values
from tests.conftest import ROOT

MM1 = ROOT / "scenarios" / "validation" / "mm1.toml"
SERVICE = "gateways.station.service.mean"
RATE = "workload.inbound_per_s"
SERVICES, RATES = (0.004, 0.006, 0.008), (40.0, 80.0)  # rho from 0.16 to 0.64
GRID = [
    "--set", f"{RATE}={','.join(map(str, RATES))}",
    "--set", f"{SERVICE}={','.join(map(str, SERVICES))}",
    "--hours", "0.1", "--replications", "2",
    "--metric", "mean.inbound", "--metric", "p95.inbound", "--metric", "util.station.0.cpu",
    "--metric", "slo", "--quiet",
]  # fmt: skip


def _sweep(out: Path, *extra: str) -> dict[str, Any]:
    assert main(["sweep", str(MM1), *GRID, "--out", str(out), *extra]) == 0
    return json.loads((out / "sweep.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _sweep(tmp_path_factory.mktemp("local"), "--workers", "2")


def test_grid_is_full_factorial(local: dict[str, Any]) -> None:
    combos = [(p["values"][RATE], p["values"][SERVICE]) for p in local["points"]]
    assert combos == [(r, s) for r in RATES for s in SERVICES]
    assert local["workers"] == 2
    assert all(p["replications"] == 2 for p in local["points"])
    assert {"mean.inbound", "p95.inbound"} <= set(local["points"][0]["ci95"])


def test_plots_one_per_numeric_metric(tmp_path: Path) -> None:
    main(["sweep", str(MM1), "--set", f"{SERVICE}=0.004,0.008", "--hours", "0.02",
          "--replications", "1", "--workers", "1", "--quiet", "--out", str(tmp_path)])  # fmt: skip
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    # default metrics: p95.inbound, slo, util.busiest (bottleneck is a name, not plotted)
    assert pngs == ["sweep-p95.inbound.png", "sweep-slo.png", "sweep-util.busiest.png"]
    assert all((tmp_path / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_each_point_agrees_with_mm1(local: dict[str, Any]) -> None:
    """Mean response S/(1-ρ) and utilisation ρ = λS at every point, and the mean rises
    with the service time at each arrival rate (common random numbers keep it monotone)."""
    for p in local["points"]:
        lam, s = p["values"][RATE], p["values"][SERVICE]
        m = p["metrics"]
        assert m["mean.inbound"] == pytest.approx(mmc_mean_response(lam, s, 1), rel=0.1)
        assert m["util.station.0.cpu"] == pytest.approx(lam * s, rel=0.05)
        assert m["p95.inbound"] > m["mean.inbound"]
        assert m["slo"] == "pass"
    for lam in RATES:
        means = [p["metrics"]["mean.inbound"] for p in local["points"]
                 if p["values"][RATE] == lam]  # fmt: skip
        assert means == sorted(means) and len(set(means)) == len(SERVICES)


def test_dask_cluster_gives_the_same_points(local: dict[str, Any], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        remote = _sweep(tmp_path / "dask", "--scheduler", cluster.scheduler_address)
        run_args = ["run", str(MM1), "--hours", "0.02", "--replications", "3", "--no-plots",
                    "--no-progress"]  # fmt: skip
        assert main([*run_args, "--scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "run-dask")]) == 0  # fmt: skip
    assert remote["workers"] == 2
    assert remote["points"] == local["points"]
    assert main([*run_args, "--workers", "1", "--out", str(tmp_path / "run-1")]) == 0
    one, dask = (
        json.loads((tmp_path / d / "results.json").read_text()) for d in ("run-1", "run-dask")
    )
    assert {**one, "wall_s": 0} == {**dask, "wall_s": 0}


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--set", "gateways.station.stagess=1"], "--set gateways.station.stagess=1"),
        (["--set", "population.mailboxes=10,abc"], "--set population.mailboxes=abc"),
        (["--set", "gateways.gateway9.hosts=1,2"], "--set gateways.gateway9.hosts"),
        (["--set", "workload.inbound_per_s"], "--set workload.inbound_per_s"),
        (["--set", "workload.inbound_per_s=1,,2"], "--set workload.inbound_per_s"),
        (["--set", "workload.inbound_per_s=1", "--metric", "p95.sideways"], "--metric p95"),
        (["--set", "workload.inbound_per_s=1", "--metric", "util.station.7.cpu"], "--metric"),
        (["--set", "workload.inbound_per_s=1", "--x", "population.mailboxes"], "--x"),
        (["--set", "workload.inbound_per_s=1", "--workers", "0"], "--workers"),
        ([], "--set"),
    ],
)
def test_bad_flag_is_one_line_and_exit_2(
    flags: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["sweep", str(MM1), *flags, "--out", str(tmp_path), "--quiet"])
    except SystemExit as e:  # argparse's own checks (types of values)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert not list(tmp_path.glob("*.json"))


def test_values_split_outside_brackets_and_read_as_toml() -> None:
    text = '3,10.5,round_robin,"a,b",[],[{host="gateway1.0",start_h=0.25}],{dist="x",mean=1}'
    parts = split_values(text)
    assert len(parts) == 7
    assert [parse_value(v) for v in parts] == [
        3, 10.5, "round_robin", "a,b", [], [{"host": "gateway1.0", "start_h": 0.25}],
        {"dist": "x", "mean": 1},
    ]  # fmt: skip
