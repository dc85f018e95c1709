"""Read a model run's ``results.json`` (the file ``mailgate run`` writes) for reports and
comparisons, refusing anything else with a one-line ``UserError``.

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


def load_results(path: str | Path) -> dict[str, Any]:
    """The results dict of a run folder or a results.json file."""
    p = results_path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: not a results.json of 'mailgate run' (not a JSON object)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise UserError(f"{p}: not a results.json of 'mailgate run' (missing {', '.join(missing)})")
    return data
