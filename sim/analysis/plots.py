"""PNG plots of a run (matplotlib, Agg backend: no display needed).

``write_plots(results_dict, folder)`` draws the latency CDF per flow, CPU
utilisation per host over the day, delivery queue length per host over the
day and the fallback MX's deferred queue over the day; returns the paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, MultipleLocator

from mailgate.sim.model.stats import LogHistogram

SPAN_LABELS = {
    "accepted_to_mailbox": "accepted → in mailbox",
    "sent_to_retrieved": "sent → retrieved (POP)",
    "sent_to_remote": "sent → accepted by remote MX",
    "sent_to_accepted": "sent → accepted (first 250)",
}


SPAN_COLOURS = dict(
    zip(SPAN_LABELS, ("tab:blue", "tab:orange", "tab:green", "tab:grey"), strict=True)
)


def _hours(d: dict[str, Any], n: int) -> list[float]:
    """Clock hour at the middle of each bucket (may exceed 24: the next day)."""
    start = d["start_hour"] + d["warmup_s"] / 3600.0
    return [start + (i + 0.5) * d["bucket_s"] / 3600.0 for i in range(n)]


def _clock_axis(ax: Any) -> None:
    """Label an axis of hours (possibly past 24) as clock times."""
    low, high = ax.get_xlim()
    if high - low >= 6:
        ax.xaxis.set_major_locator(MultipleLocator(3 if high - low <= 30 else 6))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{int(x) % 24:02d}:{round(x % 1 * 60) % 60:02d}")
    )


def _cdf(hist: dict[str, Any]) -> tuple[list[float], list[float]]:
    h = LogHistogram()
    for i, c in hist["bins"].items():
        h.bins[int(i)] = c
        h.count += c
    h.max = hist["max"] if hist["max"] is not None else 0.0
    return h.cdf_points()


def write_plots(d: dict[str, Any], folder: Path) -> list[Path]:
    """Draw the four figures into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, flow in zip(axes, ("inbound", "outbound", "internal"), strict=True):
        for span, label in SPAN_LABELS.items():
            hist = d["histograms"][flow][span]
            if hist["count"]:
                xs, ps = _cdf(hist)
                ax.step(xs, ps, where="post", color=SPAN_COLOURS[span],
                        label=f"{label} (n={hist['count']})")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("P(latency ≤ x)")
        ax.set_title(f"{flow} mail")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{d['name']}: latency CDF per flow")
    fig.tight_layout()
    paths.append(_save(fig, folder / "latency_cdf.png"))

    fig, axes = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    for hid, row in d["hosts"].items():
        cpu = row["utilisation"]["cpu"]["series"]
        axes[0].plot(_hours(d, len(cpu)), cpu, marker=".", label=hid)
        ses = row["utilisation"]["sessions"]["series"]
        axes[1].plot(_hours(d, len(ses)), ses, marker=".", label=hid)
    axes[0].set_ylabel("CPU utilisation")
    axes[1].set_ylabel("SMTP session utilisation")
    axes[1].set_xlabel("clock hour")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        _clock_axis(ax)
    axes[0].legend(fontsize=7, ncol=4)
    fig.suptitle(f"{d['name']}: utilisation per host (bucket {d['bucket_s'] / 60:g} min)")
    fig.tight_layout()
    paths.append(_save(fig, folder / "utilisation.png"))

    fig, ax = plt.subplots(figsize=(11, 4.5))
    for hid, row in d["hosts"].items():
        q = row["queue"]["series"]
        ax.plot(_hours(d, len(q)), q, marker=".", label=hid)
    ax.set_ylabel("messages waiting for a delivery slot (mean)")
    ax.set_xlabel("clock hour")
    _clock_axis(ax)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=4)
    ax.set_title(f"{d['name']}: delivery queue per host")
    fig.tight_layout()
    paths.append(_save(fig, folder / "queues.png"))

    fig, ax = plt.subplots(figsize=(11, 4.5))
    dq = d["deferred_queue"]
    ax.plot(_hours(d, len(dq["series"])), dq["series"], marker=".", label="mean")
    ax.plot(_hours(d, len(dq["bucket_max"])), dq["bucket_max"], ls="--", label="max")
    ax.set_ylabel("messages in the deferred queue")
    ax.set_xlabel("clock hour")
    _clock_axis(ax)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"{d['name']}: fallback MX deferred queue (peak {dq['peak']:g})")
    fig.tight_layout()
    paths.append(_save(fig, folder / "deferred.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
