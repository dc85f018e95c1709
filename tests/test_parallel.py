"""Runs in parallel give the same numbers as runs one after another: locally in worker
processes and on a Dask cluster (a LocalCluster of two worker processes)."""

from __future__ import annotations

from typing import Any

import pytest

from mailgate.sim.analysis.capacity import window_of
from mailgate.sim.analysis.capacity_points import run_window
from mailgate.sim.analysis.parallel import InlineExecutor, executor, run_all
from mailgate.sim.scenario.errors import UserError
from mailgate.sim.scenario.loading import load
from tests.conftest import ROOT

SMALL = ROOT / "tests" / "data" / "small-capacity.toml"
SEEDS = (11, 12, 13, 14)


def _calls() -> list[tuple[Any, ...]]:
    base = load(SMALL)
    scenario = load(SMALL, {**window_of(base).overrides(), "population.mailboxes": 1500})
    return [(scenario, seed) for seed in SEEDS]


def _numbers(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything but the wall and CPU time."""
    return [{k: v for k, v in r.items() if k not in ("wall_s", "cpu_s")} for r in runs]


@pytest.fixture(scope="module")
def one_by_one() -> list[dict[str, Any]]:
    return _numbers(run_all(InlineExecutor(), run_window, _calls()))


def test_seeds_differ_and_results_are_in_call_order(one_by_one: list[dict[str, Any]]) -> None:
    assert [r["seed"] for r in one_by_one] == list(SEEDS)
    assert len({r["objectives"][0]["value"] for r in one_by_one}) == len(SEEDS)


def test_local_processes_give_identical_results(one_by_one: list[dict[str, Any]]) -> None:
    with executor(workers=2) as ex:
        assert ex.workers == 2
        assert _numbers(run_all(ex, run_window, _calls())) == one_by_one


def test_dask_cluster_gives_identical_results(one_by_one: list[dict[str, Any]]) -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        executor(scheduler=cluster.scheduler_address) as ex,
    ):
        assert ex.workers == 2
        assert _numbers(run_all(ex, run_window, _calls())) == one_by_one


def test_unreachable_scheduler_is_a_user_error() -> None:
    pytest.importorskip("distributed")
    with (
        pytest.raises(UserError, match="cannot reach"),
        executor(scheduler="tcp://127.0.0.1:9", connect_timeout_s=1.0),
    ):
        pass
