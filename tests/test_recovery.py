"""Recovery after a remote outage, checked against Postfix's retry schedule written out here.

The scenario: every outgoing message goes to one remote site, which is down for one
hour; no other temporary failures (``temp_fail_prob = 0``, ``retry_success_prob = 1``).
A message caught by the outage is tried once by Gateway3 (which hands it to the
fallback MX), then by Gateway4 when it arrives and at every queue run its backoff
reaches, doubling from ``minimal_backoff_s`` to ``maximal_backoff_s``, until an attempt
falls after the outage (delivered) or it is older than ``max_queue_lifetime_s`` at a
failed attempt (bounced). The expected attempts and bounces are computed from each
message's send time (the trace) with that rule, not from the model's tallies.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from mailgate.sim.analysis.recovery import figures
from mailgate.sim.analysis.results_text import clean
from mailgate.sim.model.simulate import simulate
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import MessageRecord

RUN = 300.0  # queue_run_delay_s
MIN_BACKOFF = 300.0
MAX_BACKOFF = 1200.0
OUT_START = 0.5 * 3600.0  # after the run starts (the warm-up is 0.25 h)
OUT_END = OUT_START + 3600.0
FAIL_AFTER_S = 0.01


def scenario(lifetime_s: float) -> Any:
    return load(
        "drive-network",
        {
            "population.mailboxes": 4000,
            "scenario.start_hour": 8.0,
            "scenario.warmup_h": 0.25,
            "scenario.duration_h": 2.75,
            "scenario.replications": 1,
            "internet.temp_fail_prob": 0.0,
            "internet.retry_success_prob": 1.0,
            "internet.domains": [{"name": "big.example", "share": 1.0, "inbound_share": 0.0}],
            "retry.queue_run_delay_s": RUN,
            "retry.minimal_backoff_s": MIN_BACKOFF,
            "retry.maximal_backoff_s": MAX_BACKOFF,
            "retry.max_queue_lifetime_s": lifetime_s,
            "failures.remote_outage": [
                {"domain": "big.example", "start_h": OUT_START / 3600, "duration_h": 1.0}
            ],
        },
    )


def schedule(t0: float, lifetime_s: float, down_until: float = OUT_END) -> tuple[int, bool]:
    """Attempts (Gateway3's one included) and whether it bounces, for a message that
    reaches the fallback MX at ``t0`` during the outage, with the site failing every
    attempt until ``down_until``."""
    t, backoff, attempts = t0, 0.0, 1
    while True:
        attempts += 1
        if t >= down_until:
            return attempts, False
        if t - t0 >= lifetime_s:
            return attempts, True
        backoff = MIN_BACKOFF if backoff == 0 else min(2 * backoff, MAX_BACKOFF)
        # the attempt fails a few milliseconds after the queue run began (the delivery
        # plan's DNS lookup and CPU), so the next run due is one after ``t + backoff``
        t = math.ceil((t + FAIL_AFTER_S + backoff) / RUN) * RUN


def run(lifetime_s: float) -> tuple[dict[str, Any], list[MessageRecord]]:
    records: list[MessageRecord] = []

    def keep(r: Any) -> None:
        if isinstance(r, MessageRecord) and r.flow == "outbound":
            records.append(r)

    res = simulate(scenario(lifetime_s), seed=3, trace=keep)
    d = clean(res.to_dict())
    return {**d, "recovery": figures(d)}, records


def test_caught_mail_is_tried_as_often_as_the_retry_schedule_says() -> None:
    d, records = run(lifetime_s=86400.0)
    rec = d["recovery"]
    warm = d["warmup_s"]
    caught = [r for r in records if OUT_START <= r.sent < OUT_END and r.sent >= warm]
    assert len(caught) > 200
    # Postfix (and the model) throttles a site after a connect timeout: its mail fails at
    # once for minimal_backoff_s. The last timeout starts before the outage ends, so the
    # site fails attempts until at most that long (plus one timeout) after the end.
    throttle = MIN_BACKOFF + d["scenario"]["gateways"]["gateway4"]["connect_timeout_s"]
    lo = sum(schedule(r.sent, 86400.0)[0] for r in caught) / len(caught)
    hi = sum(schedule(r.sent, 86400.0, OUT_END + throttle)[0] for r in caught) / len(caught)
    amp = rec["retry_amplification"]
    # mail not caught makes exactly one attempt (no other temporary failures)
    assert amp["not_caught"] == pytest.approx(1.0)
    assert lo * 0.99 <= amp["caught"] <= hi * 1.01
    assert hi - lo < 1.5
    # every deferred message is retried within the longest backoff plus a queue run
    # after the outage ends (sampled once a minute)
    assert 0 < rec["drain_time_s"] <= MAX_BACKOFF + RUN + 60
    assert rec["bounced_queue_lifetime"] == 0


def test_bounced_are_the_messages_older_than_the_queue_lifetime() -> None:
    lifetime = 600.0
    d, records = run(lifetime_s=lifetime)
    warm = d["warmup_s"]
    caught = [r for r in records if OUT_START <= r.sent < OUT_END and r.sent >= warm]
    throttle = MIN_BACKOFF + d["scenario"]["gateways"]["gateway4"]["connect_timeout_s"]
    lo = sum(schedule(r.sent, lifetime)[1] for r in caught)
    hi = sum(schedule(r.sent, lifetime, OUT_END + throttle)[1] for r in caught)
    bounced = sum(r.outcome == "bounced" for r in records if r.sent >= warm)
    assert lo > 50
    assert lo * 0.98 <= d["recovery"]["bounced_queue_lifetime"] <= hi * 1.02
    assert bounced == d["recovery"]["bounced_queue_lifetime"]


def test_the_summary_and_the_report_state_drain_time_and_amplification(tmp_path) -> None:
    from mailgate.sim.analysis.html_report import write_report
    from mailgate.sim.analysis.results_text import summary

    d, _ = run(lifetime_s=86400.0)
    text = summary(d)
    assert "drain time:" in text and "retry amplification:" in text
    html = write_report(d, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Recovery after the failure" in html and "retry amplification" in html
