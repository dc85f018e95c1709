"""What the public API (``mailgate.api``) returns: small frozen records around the plain
dicts the CLI writes (``results.json``, ``capacity.json``, ``compare --json``), with the
text the CLI prints and the files written.

The dicts are the contract (their keys are pinned by the tests); the records only add
names for what a notebook or a script asks most often.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

#: ``mailgate compare``'s exit code for a significant regression beyond the tolerance
EXIT_REGRESSION = 4


def _json(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=1)


class _Written:
    """The files a command wrote: its PNG plots and its HTML report, if any."""

    files: tuple[Path, ...]

    @property
    def plots(self) -> list[Path]:
        return [p for p in self.files if p.suffix == ".png"]

    @property
    def report(self) -> Path | None:
        return next((p for p in self.files if p.suffix == ".html"), None)


@dataclasses.dataclass(frozen=True)
class RunResult(_Written):
    """One model run (or replication set): ``results`` is ``results.json``'s content."""

    results: dict[str, Any]
    #: the folder written to, or None when nothing was written
    out: Path | None = None
    #: every file written, in the order the CLI lists them (results.json first)
    files: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return str(self.results["name"])

    @property
    def summary(self) -> str:
        """The terminal summary ``mailgate run`` prints."""
        from mailgate.sim.analysis.results_text import summary

        return summary(self.results)

    @property
    def json(self) -> str:
        """``results.json``'s text."""
        return _json(self.results)

    @property
    def slo_ok(self) -> bool:
        """Every service-level objective met."""
        return all(o["ok"] for o in self.results["slo"])

    @property
    def bottleneck(self) -> dict[str, Any] | None:
        """The first resource to saturate (host, resource, peak utilisation, multiplier)."""
        return self.results.get("bottleneck") or None

    def latency(self, flow: str, span: str = "accepted_to_mailbox", quantile: str = "p95") -> float:
        """A latency figure in seconds, e.g. ``latency("inbound", "sent_to_retrieved", "p99")``;
        spans: accepted_to_mailbox, sent_to_accepted, sent_to_remote, sent_to_retrieved."""
        return float(self.results["latency"][flow][span][quantile])

    def utilisation(self, host: str, resource: str = "cpu", stat: str = "mean") -> float:
        """A host resource's utilisation (0..1): ``stat`` is ``mean`` or ``peak``."""
        return float(self.results["hosts"][host]["utilisation"][resource][stat])


@dataclasses.dataclass(frozen=True)
class CapacityResult(_Written):
    """A capacity search: ``data`` is ``capacity.json``'s content."""

    data: dict[str, Any]
    out: Path | None = None
    files: tuple[Path, ...] = ()

    @property
    def mailboxes(self) -> int:
        """The most mailboxes for which every SLO holds in the window."""
        return int(self.data["capacity"]["mailboxes"])

    @property
    def band95(self) -> tuple[int, int | None]:
        """From the highest load that passes at 95 % to the lowest that fails."""
        lo, hi = self.data["capacity"]["band95"]
        return int(lo), None if hi is None else int(hi)

    @property
    def found(self) -> bool:
        """Both a passing and a failing load were found (else ``mailboxes`` is a bound)."""
        return bool(self.data["capacity"]["found"])

    @property
    def binding_slo(self) -> str | None:
        b = self.data.get("binding_slo")
        return b["name"] if b else None

    @property
    def bottleneck(self) -> dict[str, Any] | None:
        return self.data.get("bottleneck")

    @property
    def points(self) -> list[dict[str, Any]]:
        """Every load run: mailboxes, replications, verdict, objectives."""
        return list(self.data["points"])

    @property
    def summary(self) -> str:
        """The text ``mailgate capacity`` prints."""
        from mailgate.sim.analysis.capacity_text import render

        return render(self.data)

    @property
    def json(self) -> str:
        return _json(self.data)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Two runs side by side: ``data`` is ``mailgate compare --json``'s content."""

    data: dict[str, Any]

    @property
    def regressions(self) -> list[str]:
        """What got significantly worse beyond the tolerance (empty: nothing)."""
        return list(self.data["regressions"])

    @property
    def regression(self) -> bool:
        return bool(self.data["regressions"])

    @property
    def exit_code(self) -> int:
        """``mailgate compare``'s exit code: 0, or 4 on a significant regression."""
        return EXIT_REGRESSION if self.regression else 0

    @property
    def summary(self) -> str:
        """The table ``mailgate compare`` prints."""
        from mailgate.sim.analysis.compare_text import render

        return render(self.data)

    @property
    def json(self) -> str:
        return _json(self.data)


@dataclasses.dataclass(frozen=True)
class Solution:
    """The analytic solver's answer for one hour: ``data`` is ``mailgate solve --json``."""

    data: dict[str, Any]

    @property
    def bottleneck(self) -> dict[str, Any] | None:
        return self.data.get("bottleneck")

    @property
    def summary(self) -> str:
        from mailgate.sim.analysis.solve import render

        return render(self.data)

    @property
    def json(self) -> str:
        return json.dumps(self.data, indent=2)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A calibration read back: ``data`` is ``calibration.json``'s content
    (``mailgate calibrate``; docs/calibration.md lists its keys)."""

    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Every target within the tolerance."""
        return bool(self.data["ok"])

    @property
    def failures(self) -> list[str]:
        return list(self.data["failures"])

    @property
    def latency(self) -> list[dict[str, Any]]:
        """Rows of measured against modelled latency: rate, span, flow, quantile,
        measured_s, modelled_s, relative_error, judged, ok."""
        return list(self.data["latency"])

    @property
    def utilisation(self) -> list[dict[str, Any]]:
        """Rows of measured against modelled CPU per host: rate, host, measured, modelled."""
        return list(self.data["utilisation"])

    @property
    def saturation(self) -> dict[str, Any]:
        """Measured and modelled saturation throughput, their relative error."""
        return dict(self.data["saturation"])
