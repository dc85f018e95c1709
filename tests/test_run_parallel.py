"""``mailgate run --workers``: replications in worker processes give the same
results.json as one after another, and figures of several replications are combined
over all of them (POP totals add up, machine utilisation is their mean), not taken from
the first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailgate.cli import main
from mailgate.sim.model.simulate import replicate, seeds
from mailgate.sim.scenario.loading import load
from tests.conftest import TESTBED

REPS = 3
MAILBOXES = 4000  # 1,000 polling mailboxes: enough POP sessions for a 8 % check


def _run(tmp: Path, *extra: str) -> Path:
    args = [
        "run", str(TESTBED), "--mailboxes", str(MAILBOXES), "--replications", str(REPS),
        "--no-plots", "--no-progress", "--out", str(tmp), *extra,
    ]  # fmt: skip
    assert main(args) == 0
    return tmp / "results.json"


def _without_wall_time(path: Path) -> str:
    """results.json as written, minus its one wall-time line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith('"wall_s"'))


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("serial"), "--workers", "1")


def test_two_workers_write_the_same_results_json(serial: Path, tmp_path: Path) -> None:
    parallel = _run(tmp_path, "--workers", "2")
    assert _without_wall_time(parallel) == _without_wall_time(serial)
    assert json.loads(serial.read_text())["replications"] == REPS


def test_pop_sessions_add_up_over_replications(serial: Path) -> None:
    """Polls are a renewal process per polling mailbox: active × simulated time / mean
    interval sessions per replication, so REPS times that in all."""
    d = json.loads(serial.read_text())
    s = load(TESTBED, {"population.mailboxes": MAILBOXES})
    active = round(s.pop.active_share * MAILBOXES)
    simulated = (s.scenario.warmup_h + s.scenario.duration_h) * 3600
    expected = REPS * active * simulated / s.pop.interval_s.mean
    assert d["pop"]["active_mailboxes"] == active
    assert d["pop"]["sessions"] == pytest.approx(expected, rel=0.08)


def test_machine_utilisation_is_the_mean_over_replications(serial: Path) -> None:
    d = json.loads(serial.read_text())
    s = load(TESTBED, {"population.mailboxes": MAILBOXES})
    each: list[dict[str, Any]] = [
        replicate(s, child)["machines"]["loopback"] for child in seeds(s.scenario.seed, REPS)
    ]
    got = d["machines"]["loopback"]
    assert len({round(m["mean"], 9) for m in each}) == REPS  # they differ: a real mean
    assert got["mean"] == pytest.approx(sum(m["mean"] for m in each) / REPS, rel=1e-12)
    assert got["mean_ci95"] > 0
