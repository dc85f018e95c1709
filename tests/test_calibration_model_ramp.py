"""The model's saturation by the testbed's ramp: a ramp step read from model records,
the criterion on synthetic runs of a known capacity, and the real model on the testbed
scenario with one host made the bottleneck (capacity from the utilisation law)."""

from __future__ import annotations

import pytest

from mailgate.calibration.measure import COMPLETION_GRACE_S
from mailgate.calibration.model_ramp import model_ramp_saturation, ramp_point
from mailgate.calibration.modelled import run_model
from mailgate.calibration.saturation import find_saturation
from mailgate.realnet.load.loadgen import flow_shares
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import MessageRecord
from tests.conftest import TESTBED

WINDOW = 8.0


def fifo_records(rate: float, capacity: float, horizon: float) -> list[MessageRecord]:
    """Deterministic arrivals at ``rate`` into one FIFO server of ``capacity`` msg/s."""
    out, free, t, i = [], 0.0, 0.0, 0
    while t < horizon:
        start = max(t, free)
        free = start + 1 / capacity
        out.append(MessageRecord(f"m{i}", "inbound", 4.0, t, accepted=t, in_mailbox=free))
        i += 1
        t = i / rate
    return out


def test_ramp_point_counts_completions_in_the_window_plus_grace() -> None:
    records = fifo_records(10.0, 8.0, WINDOW + 2)
    p = ramp_point(10.0, records, {"h": 1.0}, WINDOW)
    sent = [r for r in records if r.sent < WINDOW]
    done = [r for r in sent if r.in_mailbox <= WINDOW + COMPLETION_GRACE_S]
    assert p.extra["offered"] == pytest.approx(len(sent) / WINDOW) == pytest.approx(10.0)
    assert p.throughput == pytest.approx(len(done) / WINDOW)
    assert p.throughput == pytest.approx(8.0 * (WINDOW + COMPLETION_GRACE_S) / WINDOW, rel=0.05)
    assert p.extra["latency_growth_s"] > 0.25  # the backlog grows through the window
    # a refused message completes at once (as on the testbed)
    rejected = MessageRecord("r", "inbound", 4.0, 1.0)
    rejected.outcome = "rejected"
    assert ramp_point(1.0, [rejected], {}, WINDOW).throughput == pytest.approx(1 / WINDOW)


def test_the_ramp_criterion_on_synthetic_model_runs_finds_the_capacity() -> None:
    capacity = 37.0

    def step(rate: float):
        busy = min(rate / capacity, 1.0)
        return ramp_point(rate, fifo_records(rate, capacity, WINDOW + 2), {"h.0": busy}, WINDOW)

    sat = find_saturation(step)
    assert sat.throughput == pytest.approx(capacity, rel=0.1)
    assert sat.first_host == "h.0"  # the one server was a full core busy
    assert 1 < len(sat.steps) <= 12


def test_the_model_ramp_finds_a_host_bottleneck_where_the_utilisation_law_puts_it() -> None:
    """40 ms of CPU per SMTP visit on the one mailbox process: it saturates where
    visits/s × 0.040 s = 1 core (utilisation law; a bit lower: its other stages). The
    visits per offered message are counted in the model's hop records at a low load
    (refused spam never reaches the mailbox)."""
    overlay = {"mailbox_server": {"stages": {"smtp_receive": {"cpu_s": 0.040}}}}
    shares = flow_shares(load(TESTBED))
    _, hops, messages, _ = run_model(
        TESTBED, 4.0, shares, overlay=overlay, pop_interval_s=1.0, horizon_s=120.0
    )
    visits = sum(1 for h in hops if h.host == "mailbox.0" and h.outcome != "retrieved")
    capacity = len(messages) / visits / 0.040
    sat = model_ramp_saturation(TESTBED, shares, overlay, window_s=WINDOW, pop_interval_s=1.0)
    assert 0.8 * capacity <= sat.throughput <= 1.05 * capacity
    assert sat.first_host == "mailbox.0"
    assert "ramp on the model" in sat.method
    failing = [s for s in sat.steps if s["lagging"] or s["exploded"]]
    assert failing and min(s["rate"] for s in failing) > 0.8 * capacity
    # well past capacity the completions fall behind what was offered (the messages
    # still in flight at the end count as offered: the model writes no record for them)
    over = [s for s in sat.steps if s["rate"] > 1.3 * capacity]
    assert over and all(s["behind"] for s in over)
