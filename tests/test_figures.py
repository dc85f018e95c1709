"""The run's figures show what they claim: every resource's utilisation per host with a
100 % line and a colour per host, the SLO limits on the latency CDF, and "no queueing"
instead of a flat zero line (checked on the figure's artists, against the results)."""

from __future__ import annotations

from typing import Any

import matplotlib.colors as mcolors
import pytest

from mailgate.sim.analysis import figures
from mailgate.sim.analysis.results_text import clean
from mailgate.sim.model.simulate import simulate
from mailgate.sim.scenario.loading import load


@pytest.fixture(scope="module")
def quiet() -> dict[str, Any]:
    """A short, lightly loaded run: nothing waits for a delivery slot or is deferred."""
    s = load("peak-hour", {"population.mailboxes": 300, "scenario.duration_h": 0.25,
                           "scenario.replications": 1, "internet.temp_fail_prob": 0.0})  # fmt: skip
    return clean(simulate(s, seed=1).to_dict())


def test_utilisation_has_every_resource_host_and_the_100_percent_line(quiet) -> None:
    fig = figures.utilisation(quiet)
    axes = fig.axes
    assert [a.get_title() for a in axes] == [
        "CPU", "SMTP sessions", "delivery slots", "delivery slots of one destination", "disk"
    ]  # fmt: skip
    hosts = list(quiet["hosts"])
    for ax in axes:
        lines = [ln for ln in ax.get_lines() if ln.get_label() in hosts]
        assert sorted(ln.get_label() for ln in lines) == sorted(hosts)
        colours = {mcolors.to_hex(ln.get_color()) for ln in lines}
        assert len(colours) == len(hosts)
        assert any(set(ln.get_ydata()) == {100} for ln in ax.get_lines())


def test_latency_cdf_marks_each_slo_limit(quiet) -> None:
    fig = figures.latency_cdf(quiet)
    for ax, flow in zip(fig.axes, figures.FLOWS, strict=True):
        limits = {o["max_s"] for o in quiet["slo"] if o.get("flow") == flow}
        vertical = {ln.get_xdata()[0] for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1}
        assert limits <= vertical


def test_queues_say_no_queueing_instead_of_a_flat_line(quiet) -> None:
    assert all(r["queue"]["max"] == 0 for r in quiet["hosts"].values())
    fig = figures.queues(quiet)
    for ax in fig.axes:
        assert not ax.get_lines()
        assert any("no queueing" in t.get_text() for t in ax.texts)
