"""A fairly shared machine (``scheduler = "fair"``, ``sim.model.fair``) against formulas.

- ``FairShare`` alone, by hand: processes with blocks of 1 s and 2 s sharing one core
  end at 2 s and 3 s; on two cores at 1 s and 2 s, unless both blocks are in one
  process (one thread: they share one core); beside one hog a 1 s block takes 2 s; a
  block that arrives later shares from its arrival.
- Through ``simulate`` (what ``mailgate run`` runs), the textbook scenarios
  ``scenarios/validation/mg1-ps.toml`` and ``mm1-hog.toml`` at ρ = 0.5 and 0.8: the
  mean response within the replications' 95 % CI of ``ps_mean_response`` — M/G/1-PS's
  E[S]/(1 − ρ) for a lognormal service whose FCFS mean (Pollaczek–Khinchine) is far
  off, and twice the M/M/1's beside one hog — and Little's law on the host's level.
- The keys refuse what they cannot mean, naming the key.
"""

from __future__ import annotations

import pytest
import simpy

from mailgate.sim.analysis.queueing import pk_mean_response, ps_mean_response
from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.fair import FairShare, Group
from mailgate.sim.model.results import Results
from mailgate.sim.scenario import Scenario, load
from mailgate.sim.scenario.loading import ScenarioError
from tests.test_model_queueing import SHORT, VALIDATION, holds, per_rep, stations, within

# ------------------------------------------------------------ FairShare by hand


def finish_times(cores: int, hogs: int, jobs: list[tuple[float, float, int]]) -> list[float]:
    """When each (start, work, process) job ends on a FairShare of ``cores`` and ``hogs``;
    each process runs one thread at a time (``processes_per_host = 1``)."""
    sched = Scheduler(simpy.Environment())
    fair = FairShare(sched, cores, "m", hogs=hogs)
    groups = {p: Group(1) for _, _, p in jobs}
    ends: dict[int, float] = {}
    for i, (start, work, p) in enumerate(jobs):

        def go(i: int, work: float = work, g: Group = groups[p]) -> None:
            fair.run(work, lambda j: ends.update({j: sched.now}), i, g)

        sched.after(start, go, i)
    sched.run()
    return [ends[i] for i in range(len(jobs))]


def test_two_processes_share_one_core() -> None:
    assert finish_times(1, 0, [(0, 1.0, 0), (0, 2.0, 1)]) == pytest.approx([2.0, 3.0])


def test_a_process_never_takes_two_cores() -> None:
    assert finish_times(2, 0, [(0, 1.0, 0), (0, 2.0, 1)]) == pytest.approx([1.0, 2.0])
    # one process, two blocks in progress: they share its one core, the other stays idle
    assert finish_times(2, 0, [(0, 1.0, 0), (0, 2.0, 0)]) == pytest.approx([2.0, 3.0])


def test_a_hog_halves_a_lone_job() -> None:
    assert finish_times(1, 1, [(0, 1.0, 0)]) == pytest.approx([2.0])
    assert finish_times(2, 1, [(0, 1.0, 0)]) == pytest.approx([1.0])  # a core each


def test_a_late_job_shares_from_its_arrival() -> None:
    # 0-1 s: A alone (1 s done); then A and B at 1/2 each: A's last 1 s takes 2 s (ends 3),
    # B has 1 s of its 1.5 s by then and finishes alone at 3.5 s
    assert finish_times(1, 0, [(0, 2.0, 0), (1, 1.5, 1)]) == pytest.approx([3.0, 3.5])


def test_a_process_splits_its_share_among_its_blocks() -> None:
    # two cores, process 0 with two blocks and process 1 with one: a core per process;
    # process 0's blocks progress at 1/2 each (end at 2 s), process 1's at 1 (ends at 1 s)
    got = finish_times(2, 0, [(0, 1.0, 0), (0, 1.0, 0), (0, 1.0, 1)])
    assert got == pytest.approx([2.0, 2.0, 1.0])


# ------------------------------------------------------------ textbook scenarios


def ps_w(s: Scenario) -> float:
    ((_, mean, _, _),) = stations(s)
    machine = s.deployment.machines[0]
    lam = s.workload.inbound_per_s
    return ps_mean_response(lam, mean, machine.cores, machine.background_processes)


@pytest.mark.parametrize("name", ["mg1-ps", "mm1-hog"])
@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mean_response_is_processor_sharing(name: str, rho: float) -> None:
    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        hid = stations(s)[0][0]
        return [
            within(per_rep(res, hid, "response_mean"), ps_w(s)),
            within(per_rep(res, hid, "L"), s.workload.inbound_per_s * ps_w(s)),
        ]

    holds(name, rho, SHORT, check)


def test_the_formulas_tell_sharing_from_fcfs() -> None:
    """The check above can fail: at ρ = 0.8 FCFS would be 29 % slower than sharing."""
    s = load(VALIDATION / "mg1-ps.toml")
    ((_, mean, var, _),) = stations(s)
    fcfs = pk_mean_response(s.workload.inbound_per_s, mean, var)
    assert fcfs > 1.25 * ps_w(s)


# ------------------------------------------------------------ keys


def test_background_processes_need_the_fair_scheduler() -> None:
    with pytest.raises(ScenarioError) as err:
        load(VALIDATION / "mm1-hog.toml", {"deployment.machines": [
            {"name": "m", "cores": 1, "background_processes": 1}]})  # fmt: skip
    assert err.value.key == "deployment.machines[0].background_processes"


def test_fair_has_no_visits() -> None:
    with pytest.raises(ScenarioError) as err:
        load(VALIDATION / "mm1-hog.toml", {"deployment.machines": [
            {"name": "m", "cores": 1, "scheduler": "fair", "visits_per_block": 3}]})  # fmt: skip
    assert err.value.key == "deployment.machines[0].visits_per_block"
