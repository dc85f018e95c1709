"""How a command reaches the real chain: a testbed ``up`` is already running
(``--use-running``), or one started for this command. Shared by ``realnet probe`` and
``realnet load``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mailgate.sim.scenario.errors import UserError

if TYPE_CHECKING:
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
