"""``mailgate selftest``: the source's "mail to yourself" in the model.

One internal message (PC → mailbox server → Gateway2 → Gateway3 → our MX →
Gateway1 → mailbox server) is sent twice: once with no other traffic
(idle) and once in the middle of the busiest hour of the scenario's day
with the full background load. For each the report gives the time per hop
and per stage from the model's ``HopRecord`` trace, and sent → in mailbox
against ``slo.selftest_max_s`` (the source: "about 1 second").
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mailgate.sim.model.network import Model
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.records import HopRecord, MessageRecord

#: The probe: a short text mail to yourself (KB). Not a cost, just its size.
PROBE_KB = 2.0
#: How long after sending we wait for the probe before giving up (simulated s).
PATIENCE_S = 6 * 3600.0


def busiest_hour(s: Scenario) -> int:
    """Clock hour with the most offered messages (inbound + outbound + internal)."""
    w = s.workload
    inbound = s.daily_messages("inbound")
    outbound = s.daily_messages("outbound") + s.daily_messages("internal")
    load = [
        inbound * w.diurnal.inbound.weights[h] + outbound * w.diurnal.outbound.weights[h]
        for h in range(24)
    ]
    return max(range(24), key=load.__getitem__)


def idle(s: Scenario) -> Scenario:
    """The same system with nobody else sending or polling."""
    w = dataclasses.replace(s.workload, inbound_per_mailbox_day=0.0, outbound_per_mailbox_day=0.0)
    return dataclasses.replace(s, workload=w, pop=dataclasses.replace(s.pop, active_share=0.0))


def at_hour(s: Scenario, hour: int, warmup_h: float = 0.25) -> Scenario:
    """The scenario started so that the measured hour is clock hour ``hour``."""
    meta = dataclasses.replace(
        s.scenario, start_hour=(hour - warmup_h) % 24, warmup_h=warmup_h, duration_h=1.0
    )
    return dataclasses.replace(s, scenario=meta)


def probe(s: Scenario, seed: int, send_at: float) -> dict[str, Any]:
    """Send one probe at ``send_at`` (s after the run starts); return its hops and stages."""
    hops: list[HopRecord] = []
    done: list[MessageRecord] = []
    wanted = [""]

    def trace(record: HopRecord | MessageRecord) -> None:
        if record.msg_id == wanted[0]:
            (hops if isinstance(record, HopRecord) else done).append(record)

    model = Model(s, seed, trace=trace)
    model.t_end = max(model.t_end, send_at + PATIENCE_S)  # let the probe finish
    model.start()
    model.run(until=send_at)
    m = model.new_message("internal", False, model.env.now, size=PROBE_KB, probe=True)
    wanted[0] = f"m{m.id}"
    t = send_at
    while not done and t < send_at + PATIENCE_S:
        t += 1.0
        model.run(until=t)
    out = report(send_at, hops, done[0] if done else None)
    # the background load the probe met: messages generated per second so far
    out["background_msgs_per_s"] = (model.next_id - 1) / send_at if send_at > 0 else 0.0
    return out


def report(sent: float, hops: list[HopRecord], msg: MessageRecord | None) -> dict[str, Any]:
    """Times relative to sending: per hop (arrival, 250, left) and per stage."""
    rows = []
    prev_left = sent
    for h in sorted(hops, key=lambda h: h.arrived):
        stages = {
            name: {"elapsed_s": sp.end - sp.start, "cpu_s": sp.cpu_s, "start_s": sp.start - sent}
            for name, sp in sorted(h.stages.items(), key=lambda kv: kv[1].start)
        }
        rows.append({
            "host": h.host,
            "transit_s": h.arrived - prev_left,  # link + connect from the previous hop
            "arrived_s": h.arrived - sent,
            "accepted_s": None if h.accepted is None else h.accepted - sent,
            "left_s": None if h.left is None else h.left - sent,
            "in_host_s": None if h.left is None else h.left - h.arrived,
            "outcome": h.outcome,
            "stages": stages,
        })  # fmt: skip
        # the next hop is reached from the end of this host's delivery stages
        deliver = h.stages.get("deliver")
        prev_left = deliver.end if deliver else (h.left or h.arrived)
    in_mailbox = msg.in_mailbox if msg and msg.in_mailbox is not None else None
    return {
        "sent_s": sent,
        "in_mailbox_s": None if in_mailbox is None else in_mailbox - sent,
        "outcome": msg.outcome if msg else "in_flight",
        "hops": rows,
    }


def selftest(s: Scenario, seed: int) -> dict[str, Any]:
    """The idle and the peak-hour probe of a scenario."""
    hour = busiest_hour(s)
    busy = at_hour(s, hour)
    quiet = probe(idle(s), seed, 1.0)
    peak = probe(busy, seed, busy.scenario.warmup_h * 3600.0 + 1800.0)
    bound = s.slo.selftest_max_s
    took = quiet["in_mailbox_s"]
    return {
        "scenario": s.scenario.name,
        "seed": seed,
        "probe_kb": PROBE_KB,
        "peak_hour": hour,
        "idle": quiet,
        "peak": peak,
        "selftest_max_s": bound,
        "ok": took is not None and took <= bound,
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:9.2f} ms"


def format_report(r: dict[str, Any]) -> str:
    lines = [f"mailgate selftest {r['scenario']}: one {r['probe_kb']:g} KB mail to yourself"]
    for label, p in (
        ("idle", r["idle"]),
        (f"peak hour {r['peak_hour']:02d}-{r['peak_hour'] + 1:02d} h", r["peak"]),
    ):
        lines.append("")
        lines.append(
            f"{label}: sent → in mailbox {_ms(p['in_mailbox_s']).strip()} ({p['outcome']}; "
            f"{p['background_msgs_per_s']:.2f} other messages/s)"
        )
        for h in p["hops"]:
            lines.append(
                f"  {h['host']:11} transit {_ms(h['transit_s'])}  arrived {_ms(h['arrived_s'])}"
                f"  250 {_ms(h['accepted_s'])}  left {_ms(h['left_s'])}  ({h['outcome']})"
            )
            for name, st in h["stages"].items():
                lines.append(
                    f"      {name:13} {_ms(st['elapsed_s'])}  (CPU {_ms(st['cpu_s']).strip()})"
                )
    verdict = "PASS" if r["ok"] else "FAIL"
    lines.append("")
    lines.append(
        f"[{verdict}] idle mail to yourself {_ms(r['idle']['in_mailbox_s']).strip()} "
        f"(≤ {r['selftest_max_s']:g} s, slo.selftest_max_s)"
    )
    return "\n".join(lines)
