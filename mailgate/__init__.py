"""mailgate: simulate and measure ISP mail gateway topologies.

One import name holds it all: ``mailgate.sim`` (the scenario format and the SimPy
model), ``mailgate.realnet`` (the real relays on loopback), ``mailgate.calibration``
(the bridge between the two), ``mailgate.api`` (the public Python API, docs/api.md) and
``mailgate.commands`` (the command line, which calls the API).

The API's names are here too, loaded on first use so ``import mailgate`` stays cheap::

    import mailgate
    result = mailgate.run(mailgate.load("peak-hour", hours=0.5), seed=1)
"""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path
from typing import Any

#: the public API (``mailgate.api``), re-exported lazily
API = (
    "load", "run", "capacity", "compare", "solve", "report", "read",
    "Scenario", "RunResult", "CapacityResult", "Calibration", "Comparison", "Solution", "UserError",
)  # fmt: skip
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    """``mailgate.run`` and friends: imported from ``mailgate.api`` when first asked for."""
    if name in API:
        return getattr(importlib.import_module("mailgate.api"), name)
    raise AttributeError(f"module 'mailgate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})


try:
    __version__ = metadata.version("mailgate")
except metadata.PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

# In a source checkout the folders sim/, realnet/ and scenarios/ stand beside this one
# (the repository's layout); the wheel installs them inside it as mailgate.sim and so on.
# Looking in the checkout's root too makes both the same package.
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "sim" / "__init__.py").is_file() and (_CHECKOUT / "pyproject.toml").is_file():
    __path__.append(str(_CHECKOUT))
