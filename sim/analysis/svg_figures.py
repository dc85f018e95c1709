"""The report's figures as inline SVG text: the figures of ``sim.analysis.figures``
(the same ones ``mailgate run`` saves as PNG).

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

from mailgate.sim.analysis import figures


def to_svg(fig: Any) -> str:
    """The figure as an ``<svg>`` element to paste into HTML."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "mailgate"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def latency_cdf(d: dict[str, Any]) -> str:
    """P(latency ≤ x) per flow and span with the SLO limits."""
    return to_svg(figures.latency_cdf(d))


def utilisation(d: dict[str, Any]) -> str:
    """Every resource's utilisation per host, with the 100 % line."""
    return to_svg(figures.utilisation(d))


def queues(d: dict[str, Any]) -> str:
    """Delivery queues per host and the deferred queue ("no queueing" when empty)."""
    return to_svg(figures.queues(d))
