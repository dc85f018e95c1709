"""A shared machine's scheduler, background CPU and the send path, against formulas.

The keys of ``[[deployment.machines]]`` (``scheduler``, ``core_affinity``,
``visits_per_block``, ``wakeup_s``, ``background_cores``, ``background_burst_s``,
``background_cpu_per_message_s``) and ``workload.send_path_s`` run through
``simulate`` (what ``mailgate run`` runs) on textbook stations
(``scenarios/validation/mm1.toml`` with its hosts placed on one machine):

- per-core run queues with ``core_affinity = 1`` keep each host on the core it was
  placed on: one host per core is an M/M/1 each (mean and p95); two hosts per core
  make each core an M/M/1 at the two hosts' load (exponential service: the number
  at a work-conserving core is that of an M/M/1, so each host's mean is S/(1 − ρ));
- background CPU: the utilisation law (machine = hosts + background) and, for
  exponential bursts of the service's mean, a mean response between the two-class
  FCFS M/M/1 (S/(1 − ρ_total), a message that never waited behind its own host) and
  the low class of a non-preemptive priority M/M/1 (bursts always first); messages
  wait for their host's one process, so bursts arriving meanwhile go ahead of them;
- visits: with cores to spare a block of S in n visits takes S + n·wakeup; on one
  core, deterministic service split into many visits re-queued between visits is
  round robin with a small quantum, i.e. processor sharing: D / (1 − ρ) (M/D/1
  FCFS, one visit, gives D + ρD / (2(1 − ρ)));
- ``send_path_s``: every message reaches its first hop exactly that long after its
  scheduled send, and the send → out latency is the M/M/1 response plus it.

A miss gets one second, independent set of replications (another seed), as in
``tests/test_model_queueing.py``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailgate.sim.analysis.queueing import mmc_response_quantile, pk_mean_response
from mailgate.sim.model.results import Results
from mailgate.sim.model.simulate import simulate
from mailgate.sim.model.stats import confidence_interval
from mailgate.sim.scenario import Scenario, load
from mailgate.sim.scenario.loading import ScenarioError
from mailgate.sim.scenario.records import HopRecord, MessageRecord

MM1 = Path(__file__).resolve().parent.parent / "scenarios" / "validation" / "mm1.toml"
S = 0.01  # mean service, s
CUSTOMERS, REPS, WARM = 6_000, 5, 600

#: long statistical runs: run only with MAILGATE_SLOW=1 (CI sets it)
SLOW = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MAILGATE_SLOW") != "1", reason="long statistical run: set MAILGATE_SLOW=1"
    ),
]

Check = Callable[[Scenario, Results], list[tuple[bool, str]]]


def build(
    rate: float,
    machine: dict[str, Any],
    *,
    hosts: int = 1,
    cores_per_host: int = 1,
    service: Any = None,
    extra: dict[str, Any] | None = None,
    attempt: int = 0,
) -> Scenario:
    """mm1.toml's station with ``hosts`` hosts, all on one machine ``machine``."""
    return load(
        MM1,
        {
            "gateways.station.hosts": [{"cores": cores_per_host}] * hosts,
            "gateways.station.service": service or {"dist": "exponential", "mean": S},
            "deployment.machines": [{"name": "box", "hosts": ["station.*"], **machine}],
            "workload.inbound_per_s": rate,
            "scenario.duration_h": CUSTOMERS / rate / 3600,
            "scenario.warmup_h": WARM / rate / 3600,
            "scenario.replications": REPS,
            "scenario.seed": 11 + 1000 * attempt,
            **(extra or {}),
        },
    )


def holds(make: Callable[[int], Scenario], check: Check) -> None:
    """Every check inside its 95 % interval in the first set of replications, or else
    in a second, independent one."""
    s = make(0)
    if all(ok for ok, _ in check(s, simulate(s))):
        return
    s = make(1)
    misses = [text for ok, text in check(s, simulate(s)) if not ok]
    assert not misses, "\n".join(misses)


def within(values: list[float], expected: float, what: str, slack: float = 0.0) -> tuple[bool, str]:
    """``expected`` inside the replications' 95 % interval (widened by ``slack``)."""
    mean, half = confidence_interval(values)
    ok = abs(mean - expected) <= half + slack
    return ok, f"{what}: simulated {mean:.6g} ± {half:.3g}, formula {expected:.6g}"


def host_values(res: Results, hid: str, key: str) -> list[float]:
    out = []
    for r in res.reps:
        h: Any = r["hosts"][hid]
        if key == "mean":
            out.append(h["response"].mean)
        elif key == "p95":
            out.append(h["response"].quantile(0.95))
        else:
            out.append(h["utilisation"]["cpu"]["mean"])
    return out


def machine_values(res: Results) -> list[float]:
    return [r["machines"]["box"]["mean"] for r in res.reps]


def station_ids(n: int) -> list[str]:
    return [f"station.{i}" for i in range(n)]


# ------------------------------------------------------------ per-core run queues


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_per_core_affinity_one_host_per_core_is_mm1(rho: float) -> None:
    lam = 2 * rho / S  # split evenly by the twin choice: rho on each core
    machine = {"cores": 2, "processes_per_host": 1, "scheduler": "per-core", "core_affinity": 1.0}

    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        out = []
        for hid in station_ids(2):
            w = pk_mean_response(lam / 2, S, S * S)
            p95 = mmc_response_quantile(lam / 2, S, 1, 0.95)
            out.append(within(host_values(res, hid, "mean"), w, f"{hid} mean"))
            out.append(within(host_values(res, hid, "p95"), p95, f"{hid} p95"))
        return out

    holds(lambda a: build(lam, machine, hosts=2, attempt=a), check)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_per_core_affinity_two_hosts_share_their_core(rho: float) -> None:
    """Four one-process hosts on two cores, each staying on its first core (hosts 0, 2
    on core 0; 1, 3 on core 1): each core an M/M/1 at rho. A shared FCFS queue, or
    visits that moved to the idle core, would be much faster."""
    lam = 2 * rho / S
    machine = {"cores": 2, "processes_per_host": 1, "scheduler": "per-core", "core_affinity": 1.0}

    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        w = S / (1 - rho)
        return [within(host_values(res, h, "mean"), w, f"{h} mean") for h in station_ids(4)]

    holds(lambda a: build(lam, machine, hosts=4, attempt=a), check)


# ------------------------------------------------------------ background CPU


@pytest.mark.parametrize("scheduler", ["fcfs", "per-core"])
def test_background_cores_take_their_share_and_delay_the_host(scheduler: str) -> None:
    rho_h, b = 0.5, 0.3
    lam = rho_h / S
    machine = {"cores": 1, "processes_per_host": 1, "scheduler": scheduler,
               "background_cores": b, "background_burst_s": S}  # fmt: skip

    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        total = rho_h + b
        fcfs = S / (1 - total)  # two classes, one exponential service, FCFS
        w0 = total * S  # residual work: sum of lambda_i E[S_i^2] / 2
        priority = S + w0 / ((1 - b) * (1 - total))  # the low class, bursts first
        mean, half = confidence_interval(host_values(res, "station.0", "mean"))
        return [
            within(machine_values(res), total, "machine utilisation"),
            within(host_values(res, "station.0", "cpu"), rho_h, "host utilisation"),
            (
                fcfs <= mean + half and mean - half <= priority,
                f"mean response {mean:.5g} ± {half:.2g} outside [{fcfs:.5g}, {priority:.5g}]",
            ),
        ]

    holds(lambda a: build(lam, machine, attempt=a), check)


def test_background_per_message_adds_its_cpu_to_the_machine() -> None:
    lam, per_msg = 40.0, 0.005
    machine = {"cores": 1, "processes_per_host": 1, "background_cpu_per_message_s": per_msg}

    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        return [
            within(machine_values(res), lam * (S + per_msg), "machine utilisation"),
            within(host_values(res, "station.0", "cpu"), lam * S, "host utilisation"),
        ]

    holds(lambda a: build(lam, machine, attempt=a), check)


def test_background_cores_must_leave_a_core() -> None:
    with pytest.raises(ScenarioError) as err:
        build(10.0, {"cores": 2, "background_cores": 2.0})
    assert err.value.key == "deployment.machines[0].background_cores"


# ------------------------------------------------------------ visits and wake-ups


@pytest.mark.parametrize("scheduler", ["fcfs", "per-core"])
def test_each_visit_pays_its_wakeup(scheduler: str) -> None:
    """32 processes on 32 cores at one core of load: nobody waits for a core (per-core:
    every visit to the shortest run queue, an idle core), so a message takes its
    service plus n wake-ups."""
    n, wake, lam = 7, 0.0007, 100.0
    machine = {"cores": 32, "processes_per_host": 32, "scheduler": scheduler,
               "core_affinity": 0.0, "visits_per_block": n, "wakeup_s": wake}  # fmt: skip

    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        return [
            within(host_values(res, "station.0", "mean"), S + n * wake, "mean response"),
            within(host_values(res, "station.0", "cpu"), lam * S / 32, "host utilisation"),
        ]

    holds(lambda a: build(lam, machine, cores_per_host=32, attempt=a), check)


@pytest.mark.parametrize("rho", [0.5, pytest.param(0.8, marks=SLOW)])
def test_visits_requeue_between_visits(rho: float) -> None:
    """M/D/1 whose service runs in 50 visits, re-queued after each: round robin with a
    quantum of D/50, close to processor sharing's D / (1 − ρ) (2 % allowed for the
    finite quantum); in one visit it is the FCFS M/D/1 of Pollaczek–Khinchine."""
    lam = rho / S
    det: Any = S  # a number is a constant
    base = {"cores": 1, "processes_per_host": 1}

    def check_rr(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        ps = S / (1 - rho)
        return [within(host_values(res, "station.0", "mean"), ps, "50 visits", 0.02 * ps)]

    def check_fcfs(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        w = pk_mean_response(lam, S, 0.0)
        return [within(host_values(res, "station.0", "mean"), w, "1 visit")]

    holds(lambda a: build(lam, {**base, "visits_per_block": 50}, service=det, attempt=a), check_rr)
    holds(lambda a: build(lam, base, service=det, attempt=a), check_fcfs)


# ------------------------------------------------------------ the send path


def test_send_path_delays_the_first_hop_by_exactly_its_value() -> None:
    d, lam = 0.0035, 50.0
    s = build(lam, {"cores": 1}, extra={"workload.send_path_s": d, "scenario.replications": 1})
    sent: dict[str, float] = {}
    first: dict[str, float] = {}

    def trace(record: HopRecord | MessageRecord) -> None:
        if isinstance(record, MessageRecord):
            sent[record.msg_id] = record.sent
        elif record.host == "station.0":
            first.setdefault(record.msg_id, record.arrived)

    simulate(s, trace=trace)
    both = [k for k in first if k in sent]
    assert len(both) > CUSTOMERS // 2
    assert max(abs(first[k] - sent[k] - d) for k in both) < 1e-9


def test_send_path_adds_its_value_to_the_latency() -> None:
    d, rho = 0.0035, 0.5
    lam = rho / S

    def check(s: Scenario, res: Results) -> list[tuple[bool, str]]:
        spans = [r["hists"]["inbound"]["sent_to_remote"].mean for r in res.reps]
        return [within(spans, S / (1 - rho) + d, "sent -> remote mean")]

    holds(lambda a: build(lam, {"cores": 1}, extra={"workload.send_path_s": d}, attempt=a), check)


def test_defaults_are_not_echoed() -> None:
    """At their defaults the new keys stay out of results.json's scenario (golden files)."""
    from mailgate.sim.scenario.schema import to_table

    s = build(10.0, {"cores": 1})
    table = to_table(s)
    assert set(table["deployment"]["machines"][0]) == {"name", "cores", "hosts",
                                                       "processes_per_host"}  # fmt: skip
    assert "send_path_s" not in table["workload"]
    assert not math.isnan(s.workload.send_path_s)


# ------------------------------------------------------------ the analytic solver


def test_solver_counts_background_wakeups_and_the_send_path() -> None:
    """``mailgate solve`` on the same stations: the utilisation law with the background
    (exact in the mean), n wake-ups per block and the send path as delays."""
    from mailgate.sim.analysis.solve import solve

    lam, b, per_msg, n, wake, d = 30.0, 0.2, 0.004, 7, 0.0001, 0.0035
    s = build(
        lam,
        {"cores": 1, "processes_per_host": 1, "background_cores": b,
         "background_cpu_per_message_s": per_msg, "visits_per_block": n, "wakeup_s": wake},
        extra={"workload.send_path_s": d},
    )  # fmt: skip
    got = solve(s)
    assert got["machines"]["box"]["utilisation"] == pytest.approx(lam * (S + per_msg) + b)
    plain = solve(build(lam, {"cores": 1, "processes_per_host": 1, "background_cores": b,
                              "background_cpu_per_message_s": per_msg}))  # fmt: skip
    more = got["flows"]["inbound"]["sent_to_remote"] - plain["flows"]["inbound"]["sent_to_remote"]
    assert more == pytest.approx(n * wake + d)
