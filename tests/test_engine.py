"""The Scheduler's own event loop against SimPy's: same order, same clock, same event ids."""

from __future__ import annotations

import random

import simpy

from mailgate.sim.model.engine import Scheduler
from mailgate.sim.model.hosts import Stage, with_blocks


def _script(seed: int) -> list[list[float]]:
    """Per call: the delays of the calls it schedules when it runs (ties on purpose)."""
    rng = random.Random(seed)
    return [[rng.choice((0.0, 0.25, 1.0, rng.random())) for _ in range(rng.randint(1, 2))]
            for _ in range(400)]  # fmt: skip


def _simpy_log(script: list[list[float]], untils: list[float]) -> tuple[list, str]:
    """The script run by SimPy itself: a ``Timeout`` with a callback per call."""
    env = simpy.Environment()
    log: list[tuple[int, float, int]] = []
    nxt = [2]

    def schedule(delay: float) -> None:
        i = nxt[0]
        nxt[0] += 1
        if i < len(script):
            env.timeout(delay).callbacks.append(lambda _ev, i=i: fire(i))

    def fire(i: int) -> None:
        log.append((i, env.now, len(chunks)))
        for d in script[i]:
            schedule(d)

    env.timeout(0.5).callbacks.append(lambda _ev: fire(0))
    env.timeout(1.5).callbacks.append(lambda _ev: fire(1))  # at the first until: after it
    chunks: list[float] = []  # the run() a call ran in: calls at an until run after it
    for u in untils:
        env.run(until=u)
        chunks.append(u)
    return log, repr(env._eid)


def _our_log(script: list[list[float]], untils: list[float]) -> tuple[list, str]:
    env = simpy.Environment()
    sched = Scheduler(env)
    log: list[tuple[int, float, int]] = []
    nxt = [2]

    def fire(i: int) -> None:
        log.append((i, sched.now, len(chunks)))
        assert env.now == sched.now
        for d in script[i]:
            j = nxt[0]
            nxt[0] += 1
            if j < len(script):
                sched.after(d, fire, j)

    sched.after(0.5, fire, 0)
    sched.after(1.5, fire, 1)
    chunks: list[float] = []
    for u in untils:
        env.run(until=u)  # routed to the Scheduler's loop
        chunks.append(u)
    return log, repr(env._eid)


def test_loop_matches_simpy_order_clock_and_event_ids() -> None:
    for seed in range(5):
        script = _script(seed)
        untils = [1.5, 3.0, 40.0]
        want = _simpy_log(script, untils)
        got = _our_log(script, untils)
        assert len(want[0]) > 50
        assert got == want


def _stage(name: str, *, wait: bool = False, ends: bool = False) -> Stage:
    return Stage(name, lambda: 0.0, 0.0, 0, lambda: 0.0, fsync=False, per_rcpt=False,
                 has_wait=wait, has_cpu=True, ends_block=ends)  # fmt: skip


def test_blocks_run_on_until_a_wait_or_a_block_end() -> None:
    # a waits, then b, c run on one core; c ends its block (a verdict); d alone; e waits
    plan = with_blocks([_stage("a", wait=True), _stage("b"), _stage("c", ends=True),
                        _stage("d"), _stage("e", wait=True), _stage("f")])  # fmt: skip
    assert [st.last for st in plan] == [2, 2, 2, 3, 5, 5]
