"""How a command reaches the real chain: a testbed ``up`` is already running
(``--use-running``), or one started for this command. Shared by ``realnet probe``,
``realnet load`` and ``realnet replay``."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailgate.sim.scenario.errors import UserError

if TYPE_CHECKING:
    from mailgate.realnet.testbed.service_manager import ServiceManager
    from mailgate.realnet.testbed.supervisor import Testbed
    from mailgate.sim.scenario import Scenario


def running_state(args: argparse.Namespace, scenario: Scenario) -> Path:
    """The state dir of the running testbed (``--state-dir`` or the one ``up`` recorded)."""
    from mailgate.realnet.testbed.supervisor import running_state_dir

    state = Path(args.state_dir) if args.state_dir else running_state_dir(scenario)
    if state is None:
        raise UserError(
            f"no running testbed for {scenario.scenario.name}; start `mailgate realnet up` "
            "or drop --use-running"
        )
    return state


def start_testbed(args: argparse.Namespace) -> Testbed:
    """A testbed started for this command; a start that fails leaves nothing running."""
    from mailgate.realnet.testbed.supervisor import Testbed, TestbedError

    testbed = Testbed(args.scenario, state_dir=args.state_dir)
    try:
        testbed.__enter__()
    except TestbedError as e:
        testbed.cleanup()
        raise UserError(str(e)) from None
    except BaseException:
        testbed.cleanup()
        raise
    return testbed


@dataclass(frozen=True)
class Chain:
    """The chain a load runs against: its state dir, its hosts' current PIDs, and the
    service manager that restarts them (None on a running ``up``, which has its own)."""

    state: Path
    pids: Callable[[], dict[str, int]]
    manager: ServiceManager | None = None


@contextlib.contextmanager
def reach_chain(
    args: argparse.Namespace, scenario: Scenario, log: Callable[[str], object]
) -> Iterator[Chain]:
    """The running testbed (``--use-running``), or one started and supervised for the
    command and stopped when it ends; ``log`` gets the service manager's lines."""
    if args.use_running:
        state = running_state(args, scenario)

        def recorded() -> dict[str, int]:
            try:
                return json.loads((state / "realnet.json").read_text())["pids"]
            except (OSError, ValueError, KeyError):
                return {}  # `up` is rewriting it (a restart) or has stopped

        yield Chain(state, recorded)
        return
    from mailgate.realnet.testbed.service_manager import ServiceManager

    testbed = start_testbed(args)
    try:
        yield Chain(
            testbed.state_dir,
            lambda: {h: p.pid for h, p in testbed.procs.items()},
            ServiceManager(testbed, log=log),
        )
    finally:
        testbed.__exit__(None, None, None)
        testbed.cleanup()
