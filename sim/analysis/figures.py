"""The figures of a run, drawn once for both outputs: ``plots.py`` saves them as PNG files,
``svg_figures.py`` as inline SVG for the HTML report (matplotlib, Agg backend).

- latency CDF per flow, with each SLO of that flow as a vertical line at its limit;
- utilisation per host of every resource (CPU, SMTP sessions, delivery slots, disk),
  one panel each, with the 100 % line;
- the queues: messages waiting for a delivery slot per host and the deferred queue; a
  panel whose queue never held a message says "no queueing" instead of a flat zero line.

Each host keeps its colour in every panel (tab20: a gateway's twins are two shades of
one hue) and twins differ in line style too.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, MultipleLocator

from mailgate.sim.analysis.formatting import RESOURCE_TITLES, SPAN_TITLES, clock
from mailgate.sim.analysis.histogram import cdf_points

FLOWS = ("inbound", "outbound", "internal")
SPAN_COLOURS = dict(
    zip(SPAN_TITLES, ("tab:blue", "tab:orange", "tab:green", "tab:grey"), strict=True)
)
STYLES = ("-", "--", ":", "-.")


def hours(d: dict[str, Any], n: int) -> list[float]:
    """Clock hour at the middle of each bucket (may exceed 24: the next day)."""
    start = d.get("start_hour", 0.0) + d.get("warmup_s", 0.0) / 3600.0
    return [start + (i + 0.5) * d.get("bucket_s", 3600.0) / 3600.0 for i in range(n)]


def clock_axis(ax: Any) -> None:
    """Label an axis of hours (possibly past 24) as clock times."""
    low, high = ax.get_xlim()
    if high - low >= 6:
        ax.xaxis.set_major_locator(MultipleLocator(3 if high - low <= 30 else 6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(x)))


def host_styles(hosts: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct colour per host (and a line style per twin index)."""
    cmap = plt.get_cmap("tab20")
    out = {}
    for i, hid in enumerate(hosts):
        index = hid.rsplit(".", 1)[-1]
        style = STYLES[int(index) % len(STYLES)] if index.isdigit() else "-"
        out[hid] = {"color": cmap(i % 20), "ls": style}
    return out


def latency_cdf(d: dict[str, Any]) -> Any:
    """P(latency ≤ x) per flow and span, log time axis, the SLO limits as vertical lines."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, flow in zip(axes, FLOWS, strict=True):
        for span, title in SPAN_TITLES.items():
            hist = d["histograms"].get(flow, {}).get(span)
            if hist and hist.get("count"):
                xs, ps = cdf_points(hist)
                ax.step(xs, ps, where="post", color=SPAN_COLOURS[span],
                        label=f"{title} (n={hist['count']:,})")  # fmt: skip
        for o in d.get("slo", []):
            if o.get("flow") == flow and o.get("max_s"):
                label = f"SLO p{o['quantile'] * 100:g} ≤ {o['max_s']:g} s"
                colour = SPAN_COLOURS.get(o["span"], "black")
                ax.axvline(o["max_s"], color=colour, ls="--", lw=1, label=label)
                ax.axhline(o["quantile"], color="black", ls=":", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("P(latency ≤ x)")
        ax.set_title(f"{flow} mail")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def utilisation(d: dict[str, Any]) -> Any:
    """Each resource's utilisation per host over the run, one panel per resource."""
    styles = host_styles(list(d["hosts"]))
    # one panel per resource (CPU, sessions, delivery slots in all and of the busiest
    # destination, disk): five on a 3 × 2 grid, the spare panel removed
    fig, axes = plt.subplots(3, 2, figsize=(13, 9.5), sharex=True)
    for ax in list(axes.flat)[len(RESOURCE_TITLES) :]:
        fig.delaxes(ax)
    for ax, (res, title) in zip(axes.flat, RESOURCE_TITLES.items(), strict=False):
        for hid, row in d["hosts"].items():
            if res not in row["utilisation"]:
                continue  # results written before the resource existed
            series = row["utilisation"][res]["series"]
            ax.plot(hours(d, len(series)), [v * 100 for v in series], marker=".", label=hid,
                    **styles[hid])  # fmt: skip
        ax.axhline(100, color="red", lw=1, ls="--")
        ax.set_ylabel(f"{title} busy (%)")
        ax.set_title(title)
        # log scale: a host at 1 % and the 100 % line both readable (zeros are not drawn)
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.01, top=max(150.0, ax.get_ylim()[1]))
        ax.grid(True, alpha=0.3)
        clock_axis(ax)
    axes[0][0].legend(fontsize=7, ncol=3)
    for ax in (axes[2][0], axes[1][1]):  # the lowest panel of each column
        ax.set_xlabel("clock hour")
        ax.xaxis.set_tick_params(labelbottom=True)
    bucket = d.get("bucket_s", 3600) / 60
    fig.suptitle(f"{d.get('name', '')}: utilisation per host (bucket {bucket:g} min; red: 100 %)")
    fig.tight_layout()
    return fig


def _no_queueing(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no queueing: {what} never held a message", ha="center",
            va="center", transform=ax.transAxes)  # fmt: skip
    ax.set_yticks([])


def queues(d: dict[str, Any]) -> Any:
    """Messages waiting for a delivery slot per host, and the deferred queue."""
    styles = host_styles(list(d["hosts"]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    busy = {h: r for h, r in d["hosts"].items() if r["queue"].get("max", 0) > 0}
    for hid, row in busy.items():
        q = row["queue"]["series"]
        axes[0].plot(hours(d, len(q)), q, marker=".", label=hid, **styles[hid])
    if busy:
        axes[0].legend(fontsize=7, ncol=3)
        axes[0].set_ylabel("waiting for a delivery slot (mean)")
    else:
        _no_queueing(axes[0], "no host's delivery queue")
    axes[0].set_title("delivery queue per host")
    dq = d.get("deferred_queue") or {}
    if dq.get("series") and dq.get("peak", 0) > 0:
        axes[1].plot(hours(d, len(dq["series"])), dq["series"], marker=".", label="mean")
        axes[1].plot(hours(d, len(dq["bucket_max"])), dq["bucket_max"], ls="--", label="max")
        axes[1].legend(fontsize=7)
        axes[1].set_ylabel("messages in the deferred queue")
    else:
        _no_queueing(axes[1], "the deferred queue")
    axes[1].set_title(f"deferred queue (peak {dq.get('peak', 0):g})")
    for ax in axes:
        ax.set_xlabel("clock hour")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            clock_axis(ax)
    fig.suptitle(f"{d.get('name', '')}: queues")
    fig.tight_layout()
    return fig


def deferred(d: dict[str, Any]) -> Any:
    """The deferred queue over the run; with failures, sampled every minute with each
    failure window shaded and the drain time marked."""
    fig, ax = plt.subplots(figsize=(11, 4.5))
    fw = d.get("failure_watch")
    dq = d.get("deferred_queue") or {}
    if fw:
        dt = fw["sample_s"] / 3600.0
        t0 = d.get("start_hour", 0.0)
        for key, label in (("deferred", "deferred queue"), ("waiting", "waiting for a slot"),
                           ("parked", "parked on a host that is down")):  # fmt: skip
            series = fw["series"][key]
            if any(series):
                ax.plot([t0 + i * dt for i in range(len(series))], series, label=label)
        for w in fw["windows"]:
            ax.axvspan(t0 + w["start_s"] / 3600, t0 + w["end_s"] / 3600, color="red",
                       alpha=0.12, label=f"{w['kind']} {w['what']}")  # fmt: skip
        rec = d.get("recovery") or {}
        if rec.get("drain_time_s") is not None:
            end = max(w["end_s"] for w in fw["windows"]) + rec["drain_time_s"]
            ax.axvline(t0 + end / 3600, color="green", ls="--", label="drained (within 10 %)")
    elif dq.get("series") and dq.get("peak", 0) > 0:
        ax.plot(hours(d, len(dq["series"])), dq["series"], marker=".", label="mean")
        ax.plot(hours(d, len(dq["bucket_max"])), dq["bucket_max"], ls="--", label="max")
    if ax.lines:
        ax.set_ylabel("messages")
        ax.legend(fontsize=8)
        clock_axis(ax)
    else:
        _no_queueing(ax, "the deferred queue")
    ax.set_xlabel("clock hour")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{d.get('name', '')}: deferred queue (peak {dq.get('peak', 0):g})")
    fig.tight_layout()
    return fig
