"""Where the model puts the CPU the traces do not show, or show under another name.

Realnet's stage spans do not cover all of a host's CPU (accepting and closing
connections, the dialogue between spans, spool removal, trace writing); /proc
does. ``attribute_untraced_cpu`` splits the difference by the utilisation law
into the part that can delay a message (onto the receiving stages) and the rest
(the tier's ``housekeeping``, after the hand-off). ``submission_on_top_of_receive``
maps realnet's ``submission`` span onto what the model means by the stage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from mailgate.calibration.fit import (
    Fit,
    StageFit,
    add_measured_stage,
    hop_overhead,
    sigma_from_cv,
    tier_of,
)
from mailgate.sim.scenario.records import HopRecord
from mailgate.sim.scenario.topology import MAILBOX

#: Stages that carry the on-path part of a hop's untraced CPU: the dialogue
#: before the 250 that no span covers (parsing commands, headers) is theirs.
OVERHEAD_STAGES = ("smtp_receive", "submission")
#: Where the rest goes: CPU after the hand-off (the model's off-path stage).
HOUSEKEEPING = "housekeeping"


def attribute_untraced_cpu(
    fit: Fit,
    hops: Iterable[HopRecord],
    host_cpu_s: Mapping[str, float],
    *,
    extra_cpu_s: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Give each tier's CPU that no stage span accounts for to the model.

    What a tier's hosts used by /proc, minus what the traced stages account
    for, is the per-hop untraced CPU (the utilisation law, U = X·D, per
    hop): accepting the connection, the dialogue outside spans, spool
    removal, connection teardown, trace writing. Only part of it can delay
    the message: at a low load a host's CPU within one message's visit
    cannot exceed the wall time no span of that visit covers, so the mean
    uncovered time before the 250 (``fit.hop_overhead``) bounds the on-path part.
    That part goes to ``OVERHEAD_STAGES`` in proportion to the CPU traced in
    each; the rest ran while no span of the message was open, i.e. after
    the hand-off, and becomes the tier's ``housekeeping`` (CPU that
    competes for the cores but delays no message). When realnet traced no
    CPU in the SMTP stages (before it timed its event-loop thread), the
    on-path part goes to the receiving dialogue up to its mean elapsed time
    and the delivery client gets the remainder. ``host_cpu_s`` is each
    host's CPU over the run; ``extra_cpu_s`` per tier is CPU known to belong
    to something else (POP logins at the mailbox server). When the traced
    CPU of a tier exceeds what /proc says its hosts used (spans that await
    on the event loop also time other messages' coroutines), the tier's
    stage costs are scaled down to /proc's (``Fit.proc_scale``) and nothing
    is untraced. Returns the untraced CPU per hop of each tier (on and off
    the path).
    """
    extra = dict(extra_cpu_s or {})
    count: dict[str, int] = defaultdict(int)
    traced: dict[str, float] = defaultdict(float)
    uncovered: dict[str, float] = defaultdict(float)
    deliveries: dict[str, int] = defaultdict(int)
    per_stage: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    hosts_of: dict[str, set[str]] = defaultdict(set)
    for hop in hops:
        if hop.outcome == "retrieved":
            continue  # POP: its CPU is in extra_cpu_s or stays in the residual
        tier = tier_of(hop.host)
        count[tier] += 1
        traced[tier] += sum(span.cpu_s for span in hop.stages.values())
        uncovered[tier] += hop_overhead(hop) or 0.0
        deliveries[tier] += "deliver" in hop.stages
        for stage in OVERHEAD_STAGES:
            if stage in hop.stages:
                per_stage[tier][stage].append(hop.stages[stage].cpu_s)
        hosts_of[tier].add(hop.host)
    residual: dict[str, float] = {}
    for tier, n in count.items():
        used = sum(host_cpu_s.get(h, 0.0) for h in hosts_of[tier]) - extra.get(tier, 0.0)
        if traced[tier] > used > 0:
            # the spans counted more CPU than the processes used: a span that awaits on
            # the event loop also timed other messages' coroutines (more so under load)
            _scale_tier(fit, tier, used / traced[tier])
        total = max(used - traced[tier], 0.0)
        residual[tier] = total / n
        on_path = min(total, uncovered[tier])
        _set_housekeeping(fit, tier, (total - on_path) / n, n)
        stages = {st: v for st, v in per_stage[tier].items() if (tier, st) in fit.stages}
        weight = {st: sum(v) for st, v in stages.items()}
        if sum(weight.values()) > 0:
            for st, w in weight.items():
                sf = fit.stages[(tier, st)]
                share = on_path * w / sum(weight.values()) / len(stages[st])
                _set_cpu(sf, sf.cpu_fixed_s + share)
        else:
            counts = {st: len(v) for st, v in stages.items()}
            _split_untraced(fit, tier, on_path, {**counts, "deliver": deliveries[tier]})
    return residual


def _scale_tier(fit: Fit, tier: str, factor: float) -> None:
    """Scale the traced CPU of a tier's stages so that they add up to /proc's."""
    fit.proc_scale[tier] = factor
    for (t, _), sf in fit.stages.items():
        if t == tier and sf.source != "measured in-process":
            sf.cpu_fixed_s *= factor
            sf.cpu_per_kb_s *= factor
            sf.source += f", CPU × {factor:.2f} to /proc"


def _split_untraced(fit: Fit, tier: str, total: float, n: Mapping[str, int]) -> None:
    """No CPU traced in the SMTP stages: receive up to its elapsed, deliver the rest."""
    receive = fit.stages.get((tier, "smtp_receive"))
    deliver = fit.stages.get((tier, "deliver"))
    if receive is not None and deliver is not None and n.get("deliver"):
        share = min(total / n["smtp_receive"], receive.wait_mean_s)  # its elapsed (cpu 0)
        _set_cpu(receive, share)
        _set_cpu(deliver, (total - share * n["smtp_receive"]) / n["deliver"])
    elif receive is not None and n.get("smtp_receive"):
        _set_cpu(receive, total / n["smtp_receive"])
    elif deliver is not None and n.get("deliver"):
        _set_cpu(deliver, total / n["deliver"])


def _set_housekeeping(fit: Fit, tier: str, cpu_s: float, n: int) -> None:
    """The tier's CPU per hop after the hand-off (no span, no wait: the utilisation law)."""
    add_measured_stage(fit, tier, HOUSEKEEPING, cpu_s, n)
    sf = fit.stages[(tier, HOUSEKEEPING)]
    sf.wait_kind = "none"
    sf.source = "utilisation law, off the path"


def _set_cpu(sf: StageFit, cpu_s: float) -> None:
    """Set the fixed CPU of a stage (its per-KB part stays; its spread is rescaled)."""
    traced = sf.cpu_fixed_s > 0 or sf.cpu_per_kb_s > 0
    cpu_s = max(cpu_s, 0.0)
    sf.wait_mean_s = max(sf.wait_mean_s - (cpu_s - sf.cpu_fixed_s), 0.0)  # elapsed stays
    sf.cpu_fixed_s = cpu_s
    sf.cpu_sigma = sigma_from_cv(sf.residual_std_s / cpu_s) if cpu_s > 0 else 0.0
    sf.source = "trace + utilisation law" if traced else "utilisation law"


def submission_on_top_of_receive(fit: Fit) -> None:
    """realnet traces a PC's whole session as ``submission``; the model runs
    ``smtp_receive`` *and* ``submission`` for it (sim.model: submission is
    the AUTH on top of the dialogue), so the overlay's submission is the
    difference."""
    sub = fit.stages.get((MAILBOX, "submission"))
    recv = fit.stages.get((MAILBOX, "smtp_receive"))
    if sub is None or recv is None or sub.source == "measured in-process":
        return
    sub.cpu_fixed_s = max(sub.cpu_fixed_s - recv.cpu_fixed_s, 0.0)
    sub.cpu_per_kb_s = max(sub.cpu_per_kb_s - recv.cpu_per_kb_s, 0.0)
    sub.cpu_sigma = 0.0
    sub.source += " − smtp_receive"
