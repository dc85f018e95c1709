"""The model's behaviour is pinned: a short fixed-seed run of every shipped scenario
gives the same ``results.json`` as its golden file in ``tests/golden/`` (all but the
wall time and the library versions).

The golden files were written by the model before the restructure (issue #9); a
change that alters the model's numbers on purpose regenerates them with
``MAILGATE_REGEN_GOLDEN=1 scripts/test -k golden`` and says why in the CHANGELOG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mailgate.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
# hours simulated per scenario: long enough that each scenario's failure or surge happens
HOURS = {"remote-outage": 14.0}
NAMES = sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))
# Same seed, same code: the same numbers -- but a float's last bits may differ between
# numpy builds (vectorised log/exp), so floats are compared to 12 significant digits.
SIGNIFICANT = 12


def rounded(value: object) -> object:
    """``value`` with every float rounded to SIGNIFICANT digits, recursively."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT}g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


@pytest.mark.parametrize("name", NAMES)
def test_results_equal_golden(name: str, tmp_path: Path) -> None:
    args = [
        "run", str(ROOT / "scenarios" / f"{name}.toml"),
        "--hours", str(HOURS.get(name, 1.0)), "--replications", "1",
        "--no-plots", "--no-progress", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    got = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    got.pop("wall_s")
    got.pop("versions")
    path = GOLDEN / f"{name}.json"
    if os.environ.get("MAILGATE_REGEN_GOLDEN"):
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    assert rounded(got) == rounded(want)
