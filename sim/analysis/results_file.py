"""Read a model run's ``results.json`` (the file ``mailgate run`` writes) for reports and
comparisons, and a capacity search's ``capacity.json`` for reports, refusing anything
else with a one-line ``UserError``.

Only the keys of ``results.json`` are used (pinned by tests/test_golden.py), never the
model's objects, so a report or a comparison reads results of any version that wrote
the same keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mailgate.sim.scenario.errors import UserError

# The keys a report and a comparison read; a file without them is not a model run's results.
REQUIRED_KEYS = (
    "name", "seed", "replications", "mailboxes", "measured_s", "latency", "histograms",
    "counts", "hosts", "slo", "bottleneck",
)  # fmt: skip
RESULTS = "results.json"
CAPACITY = "capacity.json"
# The keys the capacity report reads (``mailgate capacity`` writes them).
CAPACITY_KEYS = ("scenario", "capacity", "binding_slo", "points", "today", "window", "seed")
SWEEP = "sweep.json"
# The keys the sweep report reads (``mailgate sweep`` writes them).
SWEEP_KEYS = ("scenario", "seed", "window", "axes", "metrics", "points")


def results_path(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``path/results.json``."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS
        if not p.is_file():
            other = sorted(x.name for x in p.parent.glob("*.json"))
            hint = f" (it holds {', '.join(other)})" if other else ""
            raise UserError(f"{path}: no {RESULTS} in this folder{hint}")
    elif not p.exists():
        raise UserError(f"{path}: no such file or folder")
    return p


def _read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: not a results.json of 'mailgate run' (not a JSON object)")
    return data


def load_results(path: str | Path) -> dict[str, Any]:
    """The results dict of a run folder or a results.json file."""
    p = results_path(path)
    data = _read_json(p)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise UserError(f"{p}: not a results.json of 'mailgate run' (missing {', '.join(missing)})")
    return data


def is_capacity(d: dict[str, Any]) -> bool:
    """A capacity search's answer rather than a run's results."""
    return "points" in d and "capacity" in d


def load_any(path: str | Path) -> tuple[str, dict[str, Any], Path]:
    """``("run" | "capacity" | "sweep", data, file)`` for a run, capacity or sweep folder,
    or its file. A folder holding several is read as the run (``results.json``)."""
    p = Path(path)
    if p.is_dir() and not (p / RESULTS).is_file():
        p = next((p / f for f in (CAPACITY, SWEEP) if (p / f).is_file()), p)
    if p.is_file() and p.name != RESULTS:
        data = _read_json(p)
        if "axes" in data and "points" in data:
            missing = [k for k in SWEEP_KEYS if k not in data]
            if missing:
                raise UserError(
                    f"{p}: not a sweep.json of 'mailgate sweep' (missing {', '.join(missing)})"
                )
            return "sweep", data, p
        if is_capacity(data):
            missing = [k for k in CAPACITY_KEYS if k not in data]
            if missing:
                raise UserError(
                    f"{p}: not a capacity.json of 'mailgate capacity' "
                    f"(missing {', '.join(missing)})"
                )
            return "capacity", data, p
    file = results_path(p)
    return "run", load_results(file), file
