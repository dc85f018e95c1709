"""PNG plots of a run: ``write_plots(results_dict, folder)`` saves the figures of
``sim.analysis.figures`` (latency CDF with the SLO lines, every resource's utilisation
with the 100 % line, the queues, the deferred queue) and returns the paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mailgate.sim.analysis import figures

FILES = {
    "latency_cdf.png": figures.latency_cdf,
    "utilisation.png": figures.utilisation,
    "queues.png": figures.queues,
    "deferred.png": figures.deferred,
}


def write_plots(d: dict[str, Any], folder: Path) -> list[Path]:
    """Draw the figures into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in FILES.items():
        fig = draw(d)
        path = folder / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
