"""The report's figures as inline SVG text (matplotlib, Agg backend): latency CDF per
flow, utilisation per host over the day, delivery and deferred queues.

SVG rather than PNG so the HTML stays one text file that scales on any screen; the XML
prolog and DOCTYPE are dropped (they point at w3.org), fonts are drawn as paths and the
element ids are salted with a constant so the same results give the same file.
"""

from __future__ import annotations

import io
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


def to_svg(fig: Any) -> str:
    """The figure as an ``<svg>`` element to paste into HTML."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "mailgate"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _hours(d: dict[str, Any], n: int) -> list[float]:
    """Clock hour at the middle of each bucket (may exceed 24: the next day)."""
    start = d.get("start_hour", 0.0) + d.get("warmup_s", 0.0) / 3600.0
    return [start + (i + 0.5) * d.get("bucket_s", 3600.0) / 3600.0 for i in range(n)]


def _clock_axis(ax: Any) -> None:
    low, high = ax.get_xlim()
    if high - low >= 6:
        ax.xaxis.set_major_locator(MultipleLocator(3 if high - low <= 30 else 6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(x)))


def latency_cdf(d: dict[str, Any]) -> str:
    """P(latency ≤ x) per flow and span, log time axis."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, flow in zip(axes, FLOWS, strict=True):
        for span, title in SPAN_TITLES.items():
            hist = d["histograms"].get(flow, {}).get(span)
            if hist and hist.get("count"):
                xs, ps = cdf_points(hist)
                ax.step(xs, ps, where="post", color=SPAN_COLOURS[span],
                        label=f"{title} (n={hist['count']:,})")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("P(latency ≤ x)")
        ax.set_title(f"{flow} mail")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return to_svg(fig)


def utilisation(d: dict[str, Any]) -> str:
    """Each resource's utilisation per host over the day, one panel per resource."""
    fig, axes = plt.subplots(3, 2, figsize=(13, 9.5), sharex=True)
    axes.flat[-1].set_visible(False)  # five resources on six panels
    for ax, (res, title) in zip(axes.flat, RESOURCE_TITLES.items(), strict=False):
        for hid, row in d["hosts"].items():
            if res not in row["utilisation"]:
                continue  # results written before the resource existed
            series = row["utilisation"][res]["series"]
            ax.plot(_hours(d, len(series)), [v * 100 for v in series], marker=".", label=hid)
        ax.set_ylabel(f"{title} busy (%)")
        ax.grid(True, alpha=0.3)
        _clock_axis(ax)
    axes[0][0].legend(fontsize=7, ncol=3)
    for ax in axes[-1]:
        ax.set_xlabel("clock hour")
    fig.tight_layout()
    return to_svg(fig)


def queues(d: dict[str, Any]) -> str:
    """Messages waiting for a delivery slot per host, and the fallback MX's deferred queue."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    for hid, row in d["hosts"].items():
        q = row["queue"]["series"]
        axes[0].plot(_hours(d, len(q)), q, marker=".", label=hid)
    axes[0].set_ylabel("waiting for a delivery slot (mean)")
    axes[0].legend(fontsize=7, ncol=3)
    dq = d.get("deferred_queue") or {}
    if dq.get("series"):
        axes[1].plot(_hours(d, len(dq["series"])), dq["series"], marker=".", label="mean")
        axes[1].plot(_hours(d, len(dq["bucket_max"])), dq["bucket_max"], ls="--", label="max")
        axes[1].legend(fontsize=7)
    axes[1].set_ylabel("messages in the deferred queue")
    for ax in axes:
        ax.set_xlabel("clock hour")
        ax.grid(True, alpha=0.3)
        _clock_axis(ax)
    fig.tight_layout()
    return to_svg(fig)
