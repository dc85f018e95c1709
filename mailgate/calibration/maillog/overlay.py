"""The fitted overlay: a scenario that ``extends`` the given one with what the log says.

Postfix's ``delays=a/b/c/d`` map onto the model's stages of each tier the log names:

- ``a`` (arrival until the queue manager has it: the SMTP dialogue, before-queue checks,
  ``cleanup`` and its fsync) -> ``smtp_receive.wait_s``; the before-queue stages Postfix
  does not log apart (SPF, DKIM, antivirus via milter) cost nothing extra: their time is
  in ``a``.
- ``b+c`` (queue manager wait and connection setup) -> ``deliver.wait_s`` of a forwarding
  tier; its ``d`` (transmission) is the next hop's ``a``, so it is not counted twice.
- ``b+c+d`` of the final delivery -> ``maildir.wait_s`` of the mailbox server.

Each becomes a lognormal with the log's median and mean, CPU costs and fsyncs
zero (they are inside the waits), one host per logged instance. The workload: the log's
arrival rate, diurnal profile (flat unless the log covers all 24 hours), sizes and
recipients; no spam, viruses or POP (a Postfix log does not show them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.topology import MAILBOX, ROLE_STAGES

#: Lower bound of a fitted wait: half of Postfix's finest delay resolution (1 ms).
MIN_WAIT_S = 0.0005
#: The stages whose time a Postfix log measures (everything else: zero, its time is inside).
MEASURED = {"smtp_receive", "deliver", "maildir"}


def lognormal_of(samples: Sequence[float]) -> dict[str, Any] | None:
    """``{dist = "lognormal", median, sigma}`` with the samples' median and mean.

    The mean, not the spread of log values: the log's delays are whole milliseconds (many
    are 0), which makes log moments meaningless at the bottom, while the sum of hops the
    model adds up is about means and tails. ``sigma = sqrt(2 ln(mean/median))``.
    """
    if not samples:
        return None
    values = sorted(max(x, MIN_WAIT_S) for x in samples)
    n = len(values)
    median = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
    mean = sum(values) / n
    sigma = math.sqrt(2 * math.log(mean / median)) if mean > median else 0.0
    return {"dist": "lognormal", "median": round(median, 6), "sigma": round(sigma, 4)}


def scenario_tier(name: str, scenario: Scenario) -> str | None:
    """The scenario's tier a log tier stands for (same name; ``mailbox`` for the mailbox
    server), or None."""
    return name if name in scenario.tiers else None


def overlay_table(
    result: Mapping[str, Any], samples: Mapping[str, Mapping[str, list[float]]], base: Scenario
) -> dict[str, Any]:
    """The overlay as a TOML-shaped dict (without ``extends``).

    ``samples``: tier -> {"a", "b+c", "b+c+d", "final_a"} delays in seconds (from
    ``aggregate.fit_samples``)."""
    table: dict[str, Any] = {"workload": workload_table(result, base), "pop": {"active_share": 0.0}}
    for log_tier, t in result["tiers"].items():
        tier = scenario_tier(log_tier, base)
        if tier is None:
            continue
        spec = base.tiers[tier]
        stages: dict[str, Any] = {}
        for stage in ROLE_STAGES[spec.role]:
            if stage == "housekeeping" or (stage not in MEASURED and stage not in spec.stages):
                continue
            stages[stage] = {"cpu_s": 0.0, "cpu_per_kb_s": 0.0, "dns_lookups": 0, "wait_s": 0.0}
        s = samples.get(log_tier, {})
        waits = {
            "smtp_receive": s.get("a"),
            "deliver": s.get("b+c"),
            "maildir": s.get("b+c+d") if tier == MAILBOX else None,
        }
        for stage, values in waits.items():
            fitted = lognormal_of(values or [])
            if fitted is not None and stage in stages:
                stages[stage]["wait_s"] = fitted
        out = {"hosts": len(t["instances"]), "host": {"fsync_s": 0.0}, "stages": stages}
        if tier == MAILBOX:
            table["mailbox_server"] = out
        else:
            table.setdefault("gateways", {})[tier] = out
    return table


def workload_table(result: Mapping[str, Any], base: Scenario) -> dict[str, Any]:
    """Rate, diurnal profile, sizes and recipients of the first tier (the MX)."""
    first = next(iter(result["tiers"].values()))
    mailboxes = base.population.mailboxes
    rate = first["rate_per_s"] or 0.0
    weights = first["diurnal"]["weights"]
    out: dict[str, Any] = {
        "inbound_per_mailbox_day": rate * 86400.0 / mailboxes,
        "outbound_per_mailbox_day": 0.0,
        "internal_share": 0.0,
        "spam_share": 0.0,
        "spam_spf_fail_share": 0.0,
        "virus_share": 0.0,
    }
    if all(w is not None for w in weights) and sum(weights) > 0:
        out["diurnal"] = {"inbound": [float(w) for w in weights]}
    else:
        out["diurnal"] = {"inbound": [1.0] * 24}  # the log does not cover the day
    size = first["size_kb"].get("lognormal")
    if size:
        # the base's sizes have a Pareto tail; tables merge key by key, so keep its shape
        # with no tail (a log of a few hundred messages does not show one)
        shape = {
            "dist": "lognormal_pareto",
            "median": round(size["median"], 3),
            "sigma": round(max(size["sigma"], 0.01), 4),
            "tail_share": 0.0,
            "tail_alpha": 1.5,
            "tail_min": 64.0,
            "cap": 10000.0,
        }
        out["size"] = {"legit": shape, "spam": shape}
    rcpt = first["recipients_per_message"]["mean"]
    if rcpt:
        out["recipients"] = {"dist": "geometric", "mean": round(max(rcpt, 1.0), 4)}
    return out


def write_overlay(table: Mapping[str, Any], base_path: Path, out: Path, note: str) -> Path:
    """Write ``out`` (TOML) extending ``base_path``."""
    import tomli_w

    out.parent.mkdir(parents=True, exist_ok=True)
    extends = os.path.relpath(base_path.resolve(), out.parent.resolve())
    if extends.startswith(os.pardir + os.sep + os.pardir):
        extends = str(base_path.resolve())  # far away: an absolute path survives moving out
    header = "".join(f"# {line}\n" for line in note.splitlines())
    out.write_text(header + tomli_w.dumps({"extends": extends, **table}), encoding="utf-8")
    return out
