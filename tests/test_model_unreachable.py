"""Mail for a tier whose every host is down waits in the sender's deferred queue, as in
Postfix, and the recovery figures see it (#13's replay found the model reporting a peak
of 0 while the real spools held the mail)."""

from __future__ import annotations

from mailgate.sim.analysis.offered import hourly_rate
from mailgate.sim.analysis.recovery import figures
from mailgate.sim.analysis.results_text import clean
from mailgate.sim.model.simulate import simulate
from mailgate.sim.scenario.loading import load

START_H, WINDOW_H = 0.5, 0.25  # mailbox.0 (no twin) down, after the run starts


def test_mail_for_a_dead_mailbox_server_is_deferred_then_drains() -> None:
    s = load("drive-network", {
        "population.mailboxes": 4000, "scenario.start_hour": 8.0, "scenario.warmup_h": 0.25,
        "scenario.duration_h": 1.0, "scenario.replications": 1,
        "failures.host_down": [
            {"host": "mailbox.0", "start_h": START_H, "duration_h": WINDOW_H, "refuses": True}
        ],
    })  # fmt: skip
    rec = figures(clean(simulate(s).to_dict()))
    deferred = rec["queues"]["deferred"]
    # every inbound message that passed the gateways in the window waits at Gateway1: at
    # most what was offered to the MX then, less what the MX and antivirus refuse
    offered = hourly_rate(s, "inbound")[8] * WINDOW_H * 3600
    assert 0.7 * offered <= deferred["peak"] <= offered, (deferred, offered)
    assert deferred["peak_s"] == (START_H + WINDOW_H) * 3600  # the most at the window's end
    assert {p["host"] for p in rec["host_queue_peaks"]} == {"gateway1.0", "gateway1.1"}
    # back with the next queue run after the host returns
    assert deferred["ended_in_run"] and deferred["drain_s"] <= s.retry.queue_run_delay_s
