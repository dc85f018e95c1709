"""The fit as a scenario overlay: its table, ``fitted.toml`` (written once, with
tomli-w) and the fitted scenario built from the table in memory.

The overlay ``extends`` the testbed scenario, so ``sim.scenario.loading.load``
reads ``fitted.toml`` like any other scenario. Calibration runs the model on
the same table merged in memory (``fitted_scenario``): what loading the file
gives, without reading it back.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from mailgate.calibration.fit import Fit, StageFit, dns_lookups
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.loading import extended_file, load, locate
from mailgate.sim.scenario.topology import MAILBOX

#: Waits below this (seconds) are written as 0: timer and scheduling noise.
MIN_WAIT_S = 20e-6


def stage_cost(sf: StageFit) -> dict[str, Any]:
    """The overlay's ``cpu_s`` / ``cpu_per_kb_s`` for one fitted stage."""
    spread = sf.cpu_sigma > 0 and sf.cpu_fixed_s > 0  # a lognormal needs a median > 0
    cpu = _lognormal(sf.cpu_fixed_s, sf.cpu_sigma) if spread else sf.cpu_fixed_s
    return {"cpu_s": cpu, "cpu_per_kb_s": sf.cpu_per_kb_s}


def overlay_table(
    fit: Fit, scenario: Scenario | None = None, *, stages_only: bool = False
) -> dict[str, Any]:
    """The overlay as a TOML-shaped dict (without ``extends``).

    ``stages_only``: just the stage costs, not this machine's disk and DNS
    times (for an overlay on a production deployment).
    """
    table: dict[str, Any] = {}
    for (tier, stage), sf in fit.stages.items():
        cost = stage_cost(sf)
        lookups = dns_lookups(scenario, tier, stage)
        if sf.wait_kind == "other":
            # waits inside a host (thread hand-off, the GIL) grow with contention from
            # other processes, which the model queues for explicitly: the median
            # is the uncontended part
            cost["wait_s"] = _wait(sf.wait_median_s)
        elif sf.wait_kind == "dns" and fit.dns_s is not None:
            remote = sf.wait_median_s - lookups * fit.dns_s
            cost["wait_s"] = _wait(remote)
        _tier_table(table, tier).setdefault("stages", {})[stage] = cost
    if stages_only:
        return table
    for tier, (mean, sigma) in fit.fsync_s.items():
        fsync: Any = _wait(mean)
        if sigma > 0 and fsync > 0:
            fsync = _lognormal(mean, sigma)
        _tier_table(table, tier)["host"] = {"fsync_s": fsync}
    if fit.dns_s is not None:
        table["network"] = {"dns_s": fit.dns_s}
    return table


def _lognormal(mean: float, sigma: float) -> dict[str, Any]:
    """The scenario's lognormal table with this mean (it is given by its median)."""
    return {"dist": "lognormal", "median": mean / math.exp(sigma**2 / 2), "sigma": sigma}


def _wait(value: float) -> float:
    return float(value) if value >= MIN_WAIT_S else 0.0


def _tier_table(table: dict[str, Any], tier: str) -> dict[str, Any]:
    if tier == MAILBOX:
        return table.setdefault("mailbox_server", {})
    return table.setdefault("gateways", {}).setdefault(tier, {})


#: The comment lines on top of a written overlay (tomli-w writes the values only).
HEADER = (
    "# Stage costs fitted by `mailgate calibrate` from a realnet sweep",
    "# (CPU from every load and repeat; waits and spreads from the lowest load).",
    "# CPU: fixed + per KB by least squares; spread as a lognormal sigma;",
    "# waits = elapsed - cpu (DNS per lookup in network.dns_s, disk in host.fsync_s).",
)


def write_overlay(
    table: Mapping[str, Any], base: Path, out: Path, *, stages_only: bool = False
) -> Path:
    """Write ``table`` (``overlay_table``'s) as TOML at ``out``; it ``extends`` ``base``.

    ``stages_only`` only says so in the header (the table is made that way).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    extends = os.path.relpath(base.resolve(), out.parent.resolve())
    if extends.startswith(os.pardir + os.sep + os.pardir):
        extends = str(base.resolve())  # far away: an absolute path survives moving ``out``
    lines = list(HEADER)
    if stages_only:
        lines.append("# Stage costs only: the hosts, disks and network are the base scenario's.")
    text = tomli_w.dumps({"extends": extends, **table})
    out.write_text("\n".join(lines) + "\n" + text, encoding="utf-8")
    return out


def production_base(testbed: Path) -> Path | None:
    """The scenario the testbed file ``extends`` (its production original), if any."""
    testbed = locate(testbed)  # a path, or a shipped scenario's name
    with testbed.open("rb") as f:
        parent = tomllib.load(f).get("extends")
    return extended_file(testbed, parent) if isinstance(parent, str) else None


def fitted_scenario(
    base: str | Path, overlay: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> Scenario:
    """``base`` with the ``overlay`` table on top, then the dotted ``overrides``:
    the scenario loading the written overlay (with those overrides) gives."""
    return load(base, {**dotted_keys(overlay), **(overrides or {})})


def dotted_keys(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested table as ``load``'s dotted overrides; a distribution (``{dist = …}``)
    stays one value. Copies: ``load`` must not write into the table."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping) and "dist" not in value:
            out.update(dotted_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = copy.deepcopy(value)
    return out
