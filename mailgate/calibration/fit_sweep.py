"""One fit from the whole sweep: the CPU costs from every load, the waits from the lowest.

CPU per message is a property of the code and the message (its size): fitting it from
every run of the sweep sees the whole range of sizes (a 10 % load of 30 s holds no
multi-MB message, so its per-KB costs are extrapolated) and averages over the loads
the model will be asked about. Waits are different: what a stage waits beyond its own
CPU grows with the load because of queueing (for a core, the disk, a thread), which
the model produces itself; the uncontended part the model must be given is the
lowest load's. So the combined fit takes each stage's CPU (fixed, per KB, R²,
residual) from all the traces and its waits, spread (sigma), the disk's ``fsync_s``,
DNS and the per-hop overhead from the lowest load's. How the costs move with the load
is reported by ``load_dependence``.

Realnet's span CPU of a stage that awaits (on a host's one event-loop thread) includes
the CPU of other messages' coroutines that ran meanwhile, which grows with the load;
``attribution.attribute_untraced_cpu`` caps each tier's traced CPU at what /proc says
the hosts used, so the CPU per message of a tier stays the measured one.
"""

from __future__ import annotations

import copy
import dataclasses

from mailgate.calibration.fit import Fit

#: The StageFit fields that come from all loads (the rest from the lowest).
CPU_FIELDS = ("n", "cpu_fixed_s", "cpu_per_kb_s", "cpu_cv", "r2", "residual_std_s")


def combine(low: Fit, every: Fit) -> Fit:
    """``low``'s fit with each stage's CPU taken from ``every`` (see the module)."""
    out = copy.deepcopy(low)
    for key, sf in every.stages.items():
        mine = out.stages.get(key)
        if mine is None:  # a stage the lowest load never ran (e.g. only big messages)
            out.stages[key] = dataclasses.replace(sf, source=f"{sf.source} (all loads)")
            continue
        for name in CPU_FIELDS:
            setattr(mine, name, getattr(sf, name))
        mine.source = f"{mine.source} (CPU: all loads; waits: lowest load)"
    return out
