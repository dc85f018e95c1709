"""Shared fixtures: paths to the repository's scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest

from realnet.addresses import AddressPlan
from sim.scenario import load
from sim.topology import Scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
TESTBED = ROOT / "scenarios" / "loopback-testbed.toml"


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    """The loopback testbed scenario (tests that need another define their own)."""
    return load(TESTBED)


@pytest.fixture(scope="session")
def plan(scenario: Scenario) -> AddressPlan:
    """The testbed's loopback address plan."""
    return AddressPlan(scenario)


@pytest.fixture
def write_scenario(tmp_path: Path):
    """Write a scenario file into a temporary folder and return its path."""

    def write(text: str, name: str = "s.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
