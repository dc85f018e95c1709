"""mailgate: simulate and measure ISP mail gateway topologies.

One import name holds it all: ``mailgate.sim`` (the scenario format and the SimPy
model), ``mailgate.realnet`` (the real relays on loopback), ``mailgate.calibration``
(the bridge between the two) and ``mailgate.commands`` (the command line).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

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
