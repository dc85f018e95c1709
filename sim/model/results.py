"""What a run measured, in one JSON-serialisable object.

``collect(model)`` reads one finished replication; ``Results.combine``
merges replications (latency histograms add up; per-replication numbers get
a 95 % confidence interval). ``Results.to_dict()`` is ``results.json``.

Each host's ``response`` is the time from a message's arrival at the host (its
connection reaching it) until the host hands it on (the end of its delivery plan:
it connects to the next hop or tries the Internet), or until its visit ends there
(filed in the mailboxes, rejected, quarantined); a deferred message's retries do not
count again. It excludes the wait for the next hop's 250, which ``little.W`` (the
time the host holds the message, for Little's law) includes.

Utilisation is busy time / (capacity × measured time) after the warm-up:
CPU against the cores the host's processes can hold (its cores, or its process
limit on a shared machine, at most the machine's cores on a fair one), sessions
against ``session_limit``, delivery slots against
``delivery_limit`` (all destinations), ``destination`` the busiest destination's
slots (highest mean) against ``destination_concurrency`` (``sim.model.slots``; each
host's ``destinations`` lists them all), the disk against one fsync at a time.

The bottleneck: by the utilisation law U = X·S, a resource's utilisation
grows in proportion to the offered load while it is below 1. The load
multiplier at which a resource saturates is therefore 1 / (its utilisation
in the busiest bucket); the host whose resource has the smallest multiplier
saturates first. Session and delivery slots are occupancies (they include
waiting for the next hop) so their multiplier is a first-order estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mailgate.sim.model import failure_watch, replicated
from mailgate.sim.model.network import Model
from mailgate.sim.model.statistics import SPANS
from mailgate.sim.model.stats import Level, LogHistogram, confidence_interval

FLOWS = ("inbound", "outbound", "internal")
RESOURCES = ("cpu", "sessions", "delivery", "destination", "disk")


def _clock(start_hour: float, t: float) -> float:
    return (start_hour + t / 3600.0) % 24


def collect(model: Model) -> dict[str, Any]:
    """One replication's numbers (histograms kept as objects for merging)."""
    s = model.s
    span = model.t_end - model.t_warm
    hosts: dict[str, Any] = {}
    for hid, host in model.hosts.items():
        st = host.stats
        spec = s.tiers[host.tier].hosts[host.index]
        per_dest = spec.destination_concurrency
        occupancy = host.delivery.occupancy
        busiest = max(occupancy, key=lambda d: occupancy[d].mean, default="")
        caps = {
            "cpu": host.cpu_capacity,
            "sessions": spec.session_limit,
            "delivery": spec.delivery_limit,
            "destination": per_dest,
            "disk": 1,
        }
        levels = {
            "cpu": st.cpu_busy,
            "sessions": st.sessions,
            "delivery": st.delivery_busy,
            "destination": occupancy[busiest] if busiest else _idle(model),
            "disk": st.disk_busy,
        }
        util: dict[str, Any] = {}
        for res, level in levels.items():
            series = [v / caps[res] for v in level.bucket_means()]
            peak_i = max(range(len(series)), key=series.__getitem__)
            util[res] = {
                "capacity": caps[res],
                "mean": level.mean / caps[res],
                "peak": series[peak_i],
                "peak_bucket": peak_i,
                "peak_clock_hour": _clock(
                    s.scenario.start_hour, model.t_warm + peak_i * model.bucket_s
                ),
                "series": series,
            }
        util["destination"]["name"] = busiest
        x = st.left / span
        hosts[hid] = {
            "tier": host.tier,
            "machine": host.machine.name if host.shared else None,
            "utilisation": util,
            "destinations": {
                d: {"mean": lv.mean / per_dest, "peak": max(lv.bucket_means()) / per_dest}
                for d, lv in sorted(occupancy.items())
            },
            "queue": {
                "mean": st.queue.mean,
                "max": st.queue.max,
                "series": st.queue.bucket_means(),
            },
            "session_wait": {"mean": st.session_wait.mean, "max": st.session_wait.max},
            "deferred": {"mean": st.deferred.mean, "max": st.deferred.max},
            "little": {
                "L": st.in_host.mean,
                "X": x,
                "W": st.sojourn / st.left if st.left else math.nan,
            },
            "messages": st.left,
            "response": st.response,
            "cpu_demand_s": st.cpu_demand,
            "cpu_per_message_s": st.cpu_demand / st.left if st.left else math.nan,
        }
    machines: dict[str, Any] = {}
    for name, lvl in model.machine_levels.items():
        cores = model.machines[name].cores.capacity
        machines[name] = {
            "cores": cores,
            "mean": lvl.mean / cores,
            "series": [v / cores for v in lvl.bucket_means()],
        }
    counts = {**model.counts, "in_flight": model.in_flight()}
    by_flow = {f: {**c, "in_flight": model.in_flight(f)} for f, c in model.by_flow.items()}
    return {
        "hists": model.hists,
        "hosts": hosts,
        "machines": machines,
        "counts": counts,
        "by_flow": by_flow,
        "deferred_total": {
            "mean": model.stats.deferred_total.mean,
            "max": model.stats.deferred_total.max,
            "series": model.stats.deferred_total.bucket_means(),
            "bucket_max": list(model.stats.deferred_total.bucket_max),
        },
        "pop": {
            "sessions": model.mailboxes.sessions,
            "retrievals": model.mailboxes.retrievals,
            "active_mailboxes": model.mailboxes.active,
        },
        "generated_series": list(model.stats.generated_series),
        "fallback_tiers": [n for n, t in s.tiers.items() if t.role == "fallback_mx"],
        "events": model.sched.events_scheduled,
        "failure_watch": model.watch.to_dict() if model.watch.active else None,
    }


def _idle(model: Model) -> Level:
    """A level that stayed 0 (a host with no limited destination)."""
    level = Level(model.t_warm, model.t_end, model.bucket_s)
    level.finish(model.t_end)
    return level


@dataclass
class Results:
    """Everything a run measured; ``to_dict()`` is results.json."""

    scenario: dict[str, Any]
    name: str
    seed: int
    replications: int
    measured_s: float
    warmup_s: float
    start_hour: float
    bucket_s: float
    mailboxes: int
    hists: dict[str, dict[str, LogHistogram]]
    reps: list[dict[str, Any]]
    slo: list[dict[str, Any]] = field(default_factory=list)
    bottleneck: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    objectives: list[Any] = field(default_factory=list)
    max_error_share: float = 0.01

    # ------------------------------------------------------------ derived

    @property
    def first(self) -> dict[str, Any]:
        return self.reps[0]

    def latency(self, flow: str, span: str) -> dict[str, Any]:
        """Merged summary (count, mean, p50, p95, p99, max) plus CIs over replications."""
        out: dict[str, Any] = dict(self.hists[flow][span].summary())
        if self.replications > 1 and out["count"]:
            for key in ("mean", "p95"):
                vals = [
                    (r["hists"][flow][span].mean if key == "mean" else
                     r["hists"][flow][span].quantile(0.95))
                    for r in self.reps if r["hists"][flow][span].count
                ]  # fmt: skip
                mean, half = confidence_interval(vals)
                out[f"{key}_ci95"] = [mean - half, mean + half]
        return out

    def counts(self) -> dict[str, Any]:
        """Counts summed over replications."""
        total: dict[str, int] = {}
        for r in self.reps:
            for k, v in r["counts"].items():
                total[k] = total.get(k, 0) + v
        return total

    def host_table(self) -> dict[str, Any]:
        """Per host: utilisation mean/peak per resource (CI over replications), queues, Little."""
        out: dict[str, Any] = {}
        for hid, h in self.first["hosts"].items():
            row: dict[str, Any] = {"tier": h["tier"], "machine": h["machine"], "utilisation": {}}
            for res in RESOURCES:
                means = [r["hosts"][hid]["utilisation"][res]["mean"] for r in self.reps]
                peaks = [r["hosts"][hid]["utilisation"][res]["peak"] for r in self.reps]
                mean, half = confidence_interval(means)
                series = [
                    sum(vals) / len(vals)
                    for vals in zip(
                        *(r["hosts"][hid]["utilisation"][res]["series"] for r in self.reps),
                        strict=True,
                    )
                ]
                peak_i = max(range(len(series)), key=series.__getitem__)
                row["utilisation"][res] = {
                    "capacity": h["utilisation"][res]["capacity"],
                    "mean": mean,
                    "mean_ci95": half if self.replications > 1 else None,
                    "peak": max(peaks),
                    "peak_bucket": peak_i,
                    "peak_clock_hour": _clock(
                        self.start_hour, self.warmup_s + peak_i * self.bucket_s
                    ),
                    "series": series,
                }

            def avg(key: str, sub: str, hid: str = hid) -> float:
                return sum(r["hosts"][hid][key][sub] for r in self.reps) / len(self.reps)

            def worst(key: str, hid: str = hid) -> float:
                return max(r["hosts"][hid][key]["max"] for r in self.reps)

            queues = zip(*(r["hosts"][hid]["queue"]["series"] for r in self.reps), strict=True)
            row["queue"] = {
                "mean": avg("queue", "mean"),
                "max": worst("queue"),
                "series": [sum(v) / len(v) for v in queues],
            }
            row["session_wait"] = {
                "mean": avg("session_wait", "mean"),
                "max": worst("session_wait"),
            }
            row["deferred"] = {"mean": avg("deferred", "mean"), "max": worst("deferred")}
            row["utilisation"]["destination"]["name"] = h["utilisation"]["destination"]["name"]
            row["destinations"] = h["destinations"]  # of the first replication
            row["little"] = {k: avg("little", k) for k in ("L", "X", "W")}
            row["response"] = self._response(hid)
            row["messages"] = sum(r["hosts"][hid]["messages"] for r in self.reps)
            demand = sum(r["hosts"][hid]["cpu_demand_s"] for r in self.reps)
            row["cpu_per_message_s"] = demand / row["messages"] if row["messages"] else None
            out[hid] = row
        return out

    def _response(self, hid: str) -> dict[str, Any]:
        """A host's response time (arrival until it hands the message on, files or ends it):
        the histogram merged over replications, with 95 % CIs of mean and p95 across them."""
        hists = [r["hosts"][hid]["response"] for r in self.reps]
        merged = LogHistogram()
        for h in hists:
            merged.merge(h)
        out: dict[str, Any] = merged.to_dict()
        for key in ("mean", "p95"):
            out[f"{key}_ci95"] = None
            vals = [h.mean if key == "mean" else h.quantile(0.95) for h in hists if h.count]
            if self.replications > 1 and len(vals) > 1:
                mean, half = confidence_interval(vals)
                out[f"{key}_ci95"] = [mean - half, mean + half]
        return out

    def deferred_queue(self) -> dict[str, Any]:
        d = [r["deferred_total"] for r in self.reps]
        return {
            "peak": max(x["max"] for x in d),
            "mean": sum(x["mean"] for x in d) / len(d),
            "series": [sum(v) / len(v) for v in zip(*(x["series"] for x in d), strict=True)],
            "bucket_max": [max(v) for v in zip(*(x["bucket_max"] for x in d), strict=True)],
        }

    # ------------------------------------------------------------ verdicts

    def evaluate(self) -> None:
        """Fill ``slo`` and ``bottleneck`` from the measurements."""
        self.slo = []
        for obj in self.objectives:
            h = self.hists[obj.flow][obj.span]
            value = h.quantile(obj.quantile) if h.count else None
            self.slo.append({
                "name": obj.name, "flow": obj.flow, "span": obj.span, "quantile": obj.quantile,
                "max_s": obj.max_s, "value_s": value, "samples": h.count,
                "ok": value is not None and value <= obj.max_s,
            })  # fmt: skip
        c = self.counts()
        legit = c["generated"] - c["rejected"] - c["quarantined"]
        errors = c["bounced"]
        share = errors / legit if legit > 0 else 0.0
        self.slo.append({
            "name": "error share (bounced)", "value": share, "max": self.max_error_share,
            "ok": share <= self.max_error_share,
        })  # fmt: skip
        self.bottleneck = self._bottleneck()

    def _bottleneck(self) -> dict[str, Any]:
        candidates = []
        for hid, row in self.host_table().items():
            for res, u in row["utilisation"].items():
                if u["peak"] > 0:
                    candidates.append((1 / u["peak"], hid, res, u))
        for name, m in replicated.machines(self.reps).items():
            series = m["series"]
            peak = max(series) if series else 0
            if peak > 0:
                i = series.index(peak)
                candidates.append((1 / peak, f"machine {name}", "cpu", {
                    "peak": peak, "peak_bucket": i,
                    "peak_clock_hour": _clock(self.start_hour, self.warmup_s + i * self.bucket_s),
                }))  # fmt: skip
        if not candidates:
            return {}
        candidates.sort(key=lambda c: c[0])
        mult, hid, res, u = candidates[0]
        offered = [
            sum(vals) / len(vals) / self.bucket_s
            for vals in zip(*(r["generated_series"] for r in self.reps), strict=True)
        ]
        at_peak = offered[u["peak_bucket"]] if u["peak_bucket"] < len(offered) else math.nan
        ranking = [
            {"host": h, "resource": r, "peak_utilisation": x["peak"], "multiplier": m}
            | ({"destination": x["name"]} if x.get("name") else {})
            for m, h, r, x in candidates[:8]
        ]
        return {
            "host": hid,
            "resource": res,
            "destination": u.get("name", ""),
            "peak_utilisation": u["peak"],
            "peak_clock_hour": u["peak_clock_hour"],
            "multiplier": mult,
            "mailboxes_at_saturation": self.mailboxes * mult,
            "offered_msgs_per_s_in_peak_bucket": at_peak,
            "msgs_per_s_at_saturation": at_peak * mult,
            "ranking": ranking,
        }

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        c = self.counts()
        return {
            "name": self.name,
            "seed": self.seed,
            "replications": self.replications,
            "measured_s": self.measured_s,
            "warmup_s": self.warmup_s,
            "start_hour": self.start_hour,
            "bucket_s": self.bucket_s,
            "mailboxes": self.mailboxes,
            "wall_s": self.wall_s,
            "versions": self.versions,
            "latency": {f: {span: self.latency(f, span) for span in SPANS} for f in FLOWS},
            "histograms": {
                f: {span: self.hists[f][span].to_dict() for span in SPANS} for f in FLOWS
            },
            "counts": c,
            "counts_by_flow": {
                f: {k: sum(r["by_flow"][f][k] for r in self.reps) for k in self.first["by_flow"][f]}
                for f in FLOWS
            },
            "hosts": self.host_table(),
            "machines": replicated.machines(self.reps),
            "deferred_queue": {**self.deferred_queue(), "tiers": self.first["fallback_tiers"]},
            "offered_per_bucket": [
                sum(v) / len(v)
                for v in zip(*(r["generated_series"] for r in self.reps), strict=True)
            ],
            "pop": replicated.pop(self.reps),
            "slo": self.slo,
            "bottleneck": self.bottleneck,
            "events": sum(r["events"] for r in self.reps),
            "scenario": self.scenario,
            **self._failure_watch(),
        }

    def _failure_watch(self) -> dict[str, Any]:
        """``failure_watch`` (what ``sim.analysis.recovery`` reads), for runs with failures."""
        reps = [r["failure_watch"] for r in self.reps if r.get("failure_watch")]
        return {"failure_watch": failure_watch.combine(reps)} if reps else {}

    @classmethod
    def combine(cls, reps: list[dict[str, Any]], **kw: Any) -> Results:
        hists = {f: {span: LogHistogram() for span in SPANS} for f in FLOWS}
        for r in reps:
            for f in FLOWS:
                for span in SPANS:
                    hists[f][span].merge(r["hists"][f][span])
        res = cls(hists=hists, reps=reps, replications=len(reps), **kw)
        res.evaluate()
        return res
