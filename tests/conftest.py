"""Shared fixtures: the repository's scenarios, and whole testbeds started from them."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mailgate.realnet.addresses import AddressPlan
from mailgate.sim.scenario import Scenario
from mailgate.sim.scenario.loading import load

if TYPE_CHECKING:
    import dns.resolver

    from mailgate.realnet.services.dnsserver import DnsServer
    from mailgate.realnet.services.keys import DkimKey
    from mailgate.realnet.testbed.supervisor import Testbed

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


@pytest.fixture(scope="module")
def dns_server(scenario: Scenario, plan: AddressPlan, key: DkimKey) -> Iterator[DnsServer]:
    """The realnet DNS for the testbed zone on 127.0.0.1 (a free port), publishing ``key``.

    ``key``, the DKIM key, is a fixture of the requesting test module (its algorithm varies).
    """
    from mailgate.realnet.services.dnsserver import run_dns_in_thread
    from mailgate.realnet.services.zone import build_zone

    with run_dns_in_thread(build_zone(scenario, plan, key.public_txt), "127.0.0.1", 0) as srv:
        yield srv


@pytest.fixture
def resolver(dns_server: DnsServer) -> dns.resolver.Resolver:
    """A resolver that asks ``dns_server`` and nothing else."""
    from mailgate.realnet.services.dnsserver import make_resolver

    return make_resolver("127.0.0.1", dns_server.port)


@pytest.fixture
def write_scenario(tmp_path: Path):
    """Write a scenario file into a temporary folder and return its path."""

    def write(text: str, name: str = "s.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def start_testbed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., contextlib.AbstractContextManager[Testbed]]:
    """Start the loopback testbed as real processes: ``with start_testbed(octets, name) as bed``.

    The testbed lives on a private prefix ``127.N`` (its DNS on ``127.N.255.53``),
    N drawn from ``octets``: a range no other test module uses, so that test
    modules running side by side do not collide. ``overrides`` go on top;
    further keywords go to ``Testbed``. Its state directory is a fresh temporary
    folder named after ``name``; every process is stopped on exit, also on failure.
    """
    from mailgate.realnet.testbed.supervisor import Testbed

    @contextlib.contextmanager
    def start(
        octets: range, name: str, overrides: dict[str, Any] | None = None, **kw: Any
    ) -> Iterator[Testbed]:
        prefix = f"127.{random.choice(octets)}"
        every = {
            "realnet.address_prefix": prefix,
            "realnet.dns_address": f"{prefix}.255.53",
            **(overrides or {}),
        }
        with Testbed(
            TESTBED, overrides=every, state_dir=tmp_path_factory.mktemp(name), **kw
        ) as bed:
            yield bed

    return start


def until(cond: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    """Poll ``cond`` until it returns something truthy (returned), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.05)
