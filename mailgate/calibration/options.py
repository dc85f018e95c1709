"""``mailgate calibrate``'s settings (from argparse, or a test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.calibration.uncertainty import N_BOOT
from mailgate.realnet.load.mailclients import Auth


@dataclass
class Options:
    """The command's settings (from argparse, or a test)."""

    scenario: str
    rates: list[float] | None = None
    duration_s: float = 10.0  # per repeat
    repeats: int = 3
    #: cores of CPU burner beside the testbed during the measurement (0: none)
    background_load: float = 0.0
    tolerance: float = 0.15
    out: Path = Path("results/calibration")
    user: Auth = field(default_factory=lambda: Auth("selftest", "selftest"))
    pop_interval_s: float = 1.0
    ramp_step_s: float = 8.0
    #: simulated seconds per step of the model's ramp (None: ``ramp_step_s``, the same ramp)
    model_ramp_step_s: float | None = None
    model_horizon_s: float = 300.0
    seed: int = 1
    #: resamples of the fit's bootstrap (its intervals and the capacity band)
    bootstrap: int = N_BOOT
    command: str = "mailgate calibrate"
    #: dotted overrides for the testbed only (e.g. another address prefix)
    testbed_overrides: dict[str, Any] = field(default_factory=dict)
