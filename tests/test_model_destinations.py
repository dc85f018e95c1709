"""Delivery concurrency per destination within a per-host total, as Postfix's qmgr grants it.

Checked from outside the slot pools: the messages made (their remote domain, when
sent) and the deliveries that ended (``Outcomes.finish``) are recorded as they happen,
and a SimPy process samples every host's remote attempts in flight (attempts started,
seen by ``RemoteDelivery.watchers``, minus attempts that ended), never the pools'
own counters.

(a) A remote site is down (connect timeouts of 120 s, more mail for it than its 20
slots): mail for another remote domain still leaves at once, every message of it;
with one pool of 20 per host (the old semantics, as a control) it waits behind the
dead site's timeouts. (b) With many destinations each under its own limit, the
attempts in flight on a host never exceed ``delivery_limit``, they reach it, and the
throughput is the limit over the holding time (Little's law).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from mailgate.sim.model.network import Model
from mailgate.sim.scenario import Scenario, load
from mailgate.sim.scenario.loading import ScenarioError

BASE = Path(__file__).resolve().parents[1] / "scenarios" / "drive-network.toml"
TIMEOUT = 120.0  # gateway3's connect timeout in (a): longer than any real delivery


def scenario(**over: Any) -> Scenario:
    """Only outbound mail, at a flat rate; no viruses, no temporary failures (no deferrals)."""
    return load(BASE, {
        "scenario.duration_h": 0.25, "scenario.warmup_h": 0.0, "scenario.replications": 1,
        "workload.inbound_per_mailbox_day": 0.0, "workload.internal_share": 0.0,
        "workload.diurnal.outbound": "flat", "internet.temp_fail_prob": 0.0,
        "workload.virus_share": 0.0,
        **over,
    })  # fmt: skip


class Watch:
    """Messages made, deliveries ended and remote attempts in flight, seen from outside."""

    def __init__(self, model: Model, sample_s: float) -> None:
        self.model = model
        self.sent: dict[int, tuple[int, float]] = {}  # id -> (domain, sent at)
        self.delivered: dict[int, float] = {}  # id -> accepted by the remote MX at
        self.started: Counter[str] = Counter()  # remote attempts begun, per host
        self.ended: Counter[str] = Counter()  # ... and ended (delivered), per host
        self.peak: dict[str, int] = defaultdict(int)  # most attempts in flight seen
        make, finish = model.maker.make, model.outcomes.finish

        def made(*args: Any, **kw: Any) -> Any:
            m = make(*args, **kw)
            self.sent[m.id] = (m.domain, m.sent)
            return m

        def finished(host: Any, m: Any, result: str, outcome: str = "") -> None:
            if outcome == "remote":
                self.delivered[m.id] = model.sched.now
                self.ended[host.id] += 1
            finish(host, m, result, outcome)

        model.maker.make = made  # type: ignore[method-assign]
        model.outcomes.finish = finished  # type: ignore[method-assign]
        model.remote.watchers.append(lambda m, now: self.started.update([m.host.id]))
        self.every = sample_s
        model.sched.after(0.0, self._sample, None)

    def _sample(self, _: Any) -> None:
        """Every ``every`` seconds: the attempts in flight per host (started - ended)."""
        for hid in self.started:
            self.peak[hid] = max(self.peak[hid], self.started[hid] - self.ended[hid])
        self.model.sched.after(self.every, self._sample, None)

    def delays(self, domain: int, sent_before: float) -> list[float | None]:
        """sent -> remote of each message for ``domain`` sent before ``sent_before``."""
        return [
            (self.delivered[i] - t) if i in self.delivered else None
            for i, (d, t) in self.sent.items()
            if d == domain and t < sent_before
        ]


def run(s: Scenario, sample_s: float = 0.5) -> Watch:
    model = Model(s, s.scenario.seed)
    watch = Watch(model, sample_s)
    model.start()
    model.run()
    return watch


def outage(**over: Any) -> Scenario:
    """bigmail.example (domain 0, 30 % of outbound) down all along; ~5 outbound msg/s."""
    return scenario(**{
        "population.mailboxes": 30_000, "workload.outbound_per_mailbox_day": 15.0,
        "gateways.gateway3.connect_timeout_s": TIMEOUT,
        "failures.remote_outage": [
            {"domain": "bigmail.example", "start_h": 0.0, "duration_h": 10.0}],
        **over,
    })  # fmt: skip


def test_a_dead_site_holds_only_its_own_slots() -> None:
    s = outage()
    assert [d.name for d in s.internet.domains][:2] == ["bigmail.example", "carrier.example"]
    end = s.scenario.duration_h * 3600.0
    w = run(s)
    # more mail for the dead site reaches each gateway3 host within one timeout than it has
    # slots (0.3 of ~5 msg/s over two hosts: ~90 in 120 s against 20), so its slots fill
    for hid in ("gateway3.0", "gateway3.1"):
        assert w.peak[hid] >= 20
    carrier = w.delays(1, sent_before=end - 60.0)
    assert len(carrier) > 500  # 0.15 of ~5 msg/s over 14 min
    assert None not in carrier  # every one delivered...
    assert max(carrier) < 10.0  # ...without waiting behind the dead site's timeouts
    assert all(i not in w.delivered for i, (d, _) in w.sent.items() if d == 0)


def test_the_control_one_pool_per_host_blocks_other_domains() -> None:
    """The old semantics (20 slots per host, all destinations): the same run delays the
    other domain's mail behind the dead site's connect timeouts. Shows the test above
    would see the difference."""
    s = outage(**{
        "gateways.gateway3.host": {"delivery_limit": 20, "destination_concurrency": 20},
    })  # fmt: skip
    end = s.scenario.duration_h * 3600.0
    carrier = [d for d in run(s).delays(1, sent_before=end - 300.0) if d is not None]
    assert max(carrier) > TIMEOUT / 2


def test_the_host_total_bounds_deliveries_to_many_destinations() -> None:
    """Ten remote domains of 10 % each, 20 slots each, 10 in all per host; every delivery
    holds its slot ≈ 10 s (the remote MTA): offered ≈ 2.2 msg/s per host x 10 s = 22 slots
    busy, so the host total (10) binds and each host delivers ≈ 10 / 10 s."""
    domains = [{"name": f"d{i}.example", "share": 0.1} for i in range(10)]
    s = scenario(**{
        "population.mailboxes": 30_000, "workload.outbound_per_mailbox_day": 13.0,
        "internet.domains": domains, "internet.remote_mta_s": 10.0,
        "gateways.gateway3.host": {"delivery_limit": 10},
    })  # fmt: skip
    w = run(s, sample_s=0.25)
    for hid in ("gateway3.0", "gateway3.1"):
        assert w.peak[hid] == 10
        # Little: X = busy slots / hold; the hold is 10 s of remote MTA plus the link and
        # the delivery plan (milliseconds); the first ~10 s fill the slots
        measured = s.scenario.duration_h * 3600.0 - 10.0
        assert w.ended[hid] == pytest.approx(10 / 10.0 * measured, rel=0.02)
    control = scenario(**{
        "population.mailboxes": 30_000, "workload.outbound_per_mailbox_day": 13.0,
        "internet.domains": domains, "internet.remote_mta_s": 10.0,
    })  # fmt: skip
    w = run(control, sample_s=0.25)
    assert max(w.peak.values()) > 10  # without the limit the sampler sees more in flight


def test_the_old_key_names_its_replacements() -> None:
    with pytest.raises(ScenarioError) as e:
        load(BASE, {"gateways.gateway3.host": {"delivery_concurrency": 10}})
    msg = str(e.value)
    assert "delivery_concurrency" in msg
    assert "destination_concurrency" in msg and "delivery_limit" in msg
