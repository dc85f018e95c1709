"""What else runs on the testbed's machine, measured per load, for the model.

The hosts are not alone on the cores: the DNS server, the remote sinks and the load
generator burn CPU for every message (``OUTSIDE_MODEL`` and the generator's own
``process_time``), and other processes (another tenant, ``--background-load``'s
burner) burn CPU regardless of the mail. The load generator also reaches gateway0
later than it scheduled (its lateness, a new connection, greeting and EHLO per
message), a delay the model's generated message does not have.

``background`` fits them over the sweep; ``add_machine_keys`` writes them into the
overlay as ``[[deployment.machines]]`` ``scheduler = "fair"`` (the OS shares the
cores: ``sim.model.fair``), ``background_processes`` (a full-core burner),
``background_cpu_per_message_s`` / ``background_cores`` and ``[workload]
send_path_s`` — only when the scenario format has those keys
(``MODEL_HAS_MACHINE_KEYS``); until then they are measured and reported, and the
model's saturation gets the outside CPU by the utilisation law.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from mailgate.calibration.points import Point
from mailgate.calibration.saturation import outside_cpu_per_message
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.deployment import Machine
from mailgate.sim.scenario.workload import Workload

#: The model keys this module writes (added to the scenario format by another branch).
MACHINE_KEYS = ("background_cpu_per_message_s", "background_cores")
WORKLOAD_KEYS = ("send_path_s",)


def spec_has_machine_keys() -> bool:
    """Whether the scenario format knows the background and send-path keys."""
    machine = {f.name for f in dataclasses.fields(Machine)}
    workload = {f.name for f in dataclasses.fields(Workload)}
    return set(MACHINE_KEYS) <= machine and set(WORKLOAD_KEYS) <= workload


#: Write the keys into ``fitted.toml`` (and run the model with them). Follows the
#: scenario format: false until the model's machine keys are merged, then true.
MODEL_HAS_MACHINE_KEYS = spec_has_machine_keys()


def background(
    points: Sequence[Point],
    burner: dict[str, Any] | None = None,
    host_constant: dict[str, float] | None = None,
) -> dict[str, Any]:
    """What the model needs of the CPU outside the messages' stages, fitted over the sweep:

    - outside CPU (DNS server, remote sinks, load generator) as a line in the offered
      rate: its slope is the CPU per message, its intercept constant cores (the
      generator's timers, the DNS server's housekeeping); the ratio of the two
      totals would make a message dearer the lower the load;
    - ``host_constant``: each host's constant burn (``Measurement.constant_cores``);
    - other processes: a full-core burner (``--background-load`` with whole cores) as
      that many always-runnable processes of a fair machine; anything else as the
      median of the other processes' cores over the loads;
    - the send path (scheduled send → gateway0, mean over the inbound messages of the
      lowest load)."""
    per_load = []
    for p in points:
        per_msg = outside_cpu_per_message(p)
        per_load.append(
            {
                "rate": p.rate,
                "outside_cpu_per_message_s": per_msg,
                "foreign_busy_cores": p.extra.get("foreign_busy_cores"),
                "send_path_s": p.extra.get("send_path_s") or {},
            }
        )
    rates = [r["rate"] for r in per_load]
    outside = [r["outside_cpu_per_message_s"] * r["rate"] for r in per_load]  # cores
    per_msg_s, outside_cores = line_in_rate(rates, outside)
    foreign = [r["foreign_busy_cores"] for r in per_load if r["foreign_busy_cores"] is not None]
    hogs = burner_processes(burner)
    other = 0.0 if hogs or not foreign else float(np.median(foreign))
    hosts = sum((host_constant or {}).values())
    # the send path of the lowest load: it is a fixed delay in the model, and what it
    # gains under load is the generator falling behind (measured 2.3-2.5 ms at 10-50 %,
    # 6 ms at 70 %, 20 ms at 90 %: a mean over the sweep gave 9.6 ms and +44 % on p50)
    lowest = min((r for r in per_load if r["send_path_s"]), key=lambda r: r["rate"], default=None)
    path = lowest["send_path_s"]["mean"] if lowest else 0.0
    return {
        "per_load": per_load,
        "cpu_per_message_s": per_msg_s,
        "cores": other + outside_cores + hosts,
        "other_cores": other,
        "outside_constant_cores": outside_cores,
        "hosts_constant_cores": hosts,
        "processes": hogs,
        "send_path_s": path,
        "burner": burner,
        "in_model": MODEL_HAS_MACHINE_KEYS,
    }


def line_in_rate(rates: Sequence[float], cores: Sequence[float]) -> tuple[float, float]:
    """(CPU seconds per message, constant cores) of processes busy ``cores`` at offered
    ``rates``: least squares of cores on the rate; through the origin when the intercept
    would be negative or there is one rate only (no constant load is negative)."""
    x = np.asarray(rates, dtype=float)
    y = np.asarray(cores, dtype=float)
    if len(set(x.tolist())) >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        if intercept >= 0:
            return float(slope), float(intercept)
    sxx = float(x @ x)
    return (float(x @ y) / sxx if sxx > 0 else 0.0), 0.0


def burner_processes(burner: dict[str, Any] | None) -> int:
    """Always-runnable processes of ``--background-load``: its processes when each burns
    a whole core (a duty-cycled burner is bursts, in ``other_cores``)."""
    if not burner or not burner.get("processes"):
        return 0
    whole = burner.get("cores_requested", 0.0) >= burner["processes"] - 1e-9
    return int(burner["processes"]) if whole else 0


#: The most of a machine's cores the overlay gives to background load: the scenario checks
#: require ``background_cores < cores`` (a machine full of other work has no model).
MAX_BACKGROUND_SHARE = 0.9


def model_background_cores(measured: float, cores: int) -> float:
    """The other processes' cores as the model can take them (at most 90 % of the machine)."""
    return min(max(measured, 0.0), MAX_BACKGROUND_SHARE * cores)


def add_machine_keys(
    table: dict[str, Any], scenario: Scenario, measured: dict[str, Any], *, enabled: bool
) -> dict[str, Any]:
    """The overlay ``table`` with the background on the testbed's (first) machine and the
    send path in ``[workload]``, when ``enabled``; else ``table`` unchanged.

    ``[[deployment.machines]]`` is an array: the overlay repeats every machine of the
    scenario with the keys added on the first (the testbed has one machine)."""
    machines = scenario.deployment.machines
    if not enabled or not machines:
        return table
    rows = []
    for i, m in enumerate(machines):
        row = {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(m)
            if (v := getattr(m, f.name)) is not None
        }
        if i == 0:
            # the testbed's machine is Linux's: its cores shared fairly (sim.model.fair)
            row["scheduler"] = "fair"
            row["background_processes"] = int(measured.get("processes", 0))
            row["background_cpu_per_message_s"] = float(measured["cpu_per_message_s"])
            row["background_cores"] = model_background_cores(float(measured["cores"]), m.cores)
        rows.append(row)
    table.setdefault("deployment", {})["machines"] = rows
    table.setdefault("workload", {})["send_path_s"] = float(measured["send_path_s"])
    return table
