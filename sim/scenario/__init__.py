"""The shared vocabulary of the model and the real chain: the scenario schema (frozen
dataclasses), loading with ``extends``, distributions, and the trace record format.
Imports neither simpy nor asyncio.

The names most code needs are here: ``from mailgate.sim.scenario import load, Scenario``.
The modules, one idea each:

- ``root``: ``Scenario``, the whole description, and ``[scenario]`` (``Meta``)
- ``topology``: stages, roles, tiers of hosts and their stage costs, network, Internet
- ``workload``, ``diurnal``: population, traffic, sizes, surges, POP; hourly shapes
- ``mta``, ``failures``, ``slo``, ``deployment``: retry and limits; what goes wrong;
  objectives; machines and the realnet layout
- ``fields``, ``schema``: how a field is declared; building dataclasses from TOML
- ``loading``, ``checks``, ``shipped``: reading a file (``extends``, shipped names),
  the whole-scenario rules, the scenarios that ship with mailgate
- ``distributions``, ``records``, ``errors``: random quantities, trace records, UserError
"""

from mailgate.sim.scenario.diurnal import DIURNAL_SHAPES, HourlyProfile
from mailgate.sim.scenario.errors import UserError
from mailgate.sim.scenario.loading import ScenarioError, from_table, load
from mailgate.sim.scenario.root import Meta, Scenario
from mailgate.sim.scenario.schema import SchemaError, to_table
from mailgate.sim.scenario.shipped import ShippedScenario, shipped_scenarios
from mailgate.sim.scenario.topology import (
    FLOWS,
    INTERNET,
    MAILBOX,
    ROLE_STAGES,
    STAGES,
    HostSpec,
    StageCost,
    Tier,
)

__all__ = [
    "DIURNAL_SHAPES",
    "FLOWS",
    "INTERNET",
    "MAILBOX",
    "ROLE_STAGES",
    "STAGES",
    "HostSpec",
    "HourlyProfile",
    "Meta",
    "Scenario",
    "ScenarioError",
    "SchemaError",
    "ShippedScenario",
    "StageCost",
    "Tier",
    "UserError",
    "from_table",
    "load",
    "shipped_scenarios",
    "to_table",
]
