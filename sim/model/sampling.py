"""Fast scalar draws from scenario distributions.

``Distribution.sample(rng)`` makes one numpy call per draw (microseconds
each); the model draws millions. ``sampler(dist, rng)`` returns a
zero-argument function that serves draws from a buffer refilled with one
vectorised numpy call, and a constant's sampler is a plain return. Each
sampler owns a child generator, so the stream of one quantity does not shift
when another quantity is drawn more or less often (common random numbers
across scenarios that differ in one place).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mailgate.sim.scenario.distributions import (
    Constant,
    Distribution,
    Exponential,
    Geometric,
    Lognormal,
    LognormalPareto,
    Uniform,
)

BATCH = 4096


def _vector(dist: Distribution, rng: np.random.Generator, n: int) -> np.ndarray | None:
    """n draws at once, or None if we do not know how to vectorise ``dist``."""
    if isinstance(dist, Exponential):
        return rng.exponential(dist.mean_value, n)
    if isinstance(dist, Uniform):
        return rng.uniform(dist.low, dist.high, n)
    if isinstance(dist, Lognormal):
        return rng.lognormal(math.log(dist.median), dist.sigma, n)
    if isinstance(dist, Geometric):
        return rng.geometric(1 / dist.mean_value, n).astype(float)
    if isinstance(dist, LognormalPareto):
        tail = rng.random(n) < dist.tail_share
        body = rng.lognormal(math.log(dist.median), dist.sigma, n)
        pareto = dist.tail_min * (1 - rng.random(n)) ** (-1 / dist.tail_alpha)
        return np.minimum(np.where(tail, pareto, body), dist.cap)
    return None


class _Buffered:
    """Serves draws from a refilled numpy buffer."""

    __slots__ = ("buf", "dist", "i", "rng")

    def __init__(self, dist: Distribution, rng: np.random.Generator) -> None:
        self.dist = dist
        self.rng = rng
        self.buf: list[float] = []
        self.i = 0

    def __call__(self) -> float:
        i = self.i
        if i >= len(self.buf):
            self.buf = _vector(self.dist, self.rng, BATCH).tolist()  # type: ignore[union-attr]
            i = 0
        self.i = i + 1
        return self.buf[i]


class _Counts:
    """Poisson counts served from a refilled numpy buffer."""

    __slots__ = ("buf", "i", "lam", "rng")

    def __init__(self, rng: np.random.Generator, lam: float) -> None:
        self.rng, self.lam, self.buf, self.i = rng, lam, [], 0

    def __call__(self) -> float:
        if self.i >= len(self.buf):
            self.buf, self.i = self.rng.poisson(self.lam, BATCH).tolist(), 0
        self.i += 1
        return self.buf[self.i - 1]


def sampler(dist: Distribution, rng: np.random.Generator) -> Callable[[], float]:
    """A zero-argument function drawing from ``dist`` with generator ``rng``."""
    if isinstance(dist, Constant):
        value = dist.value
        return lambda: value
    if _vector(dist, np.random.default_rng(0), 1) is not None:
        return _Buffered(dist, rng)
    return lambda: dist.sample(rng)


class Streams:
    """Named child generators of one seed, created in a fixed order.

    ``streams.rng("sizes")`` always gives the same generator for the same
    seed and name, whatever else has been drawn.
    """

    def __init__(self, seed: int | np.random.SeedSequence) -> None:
        self.root = (
            seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        )

    def rng(self, name: str) -> np.random.Generator:
        # Derive a child from the name so that adding a stream does not shift others.
        key = [int.from_bytes(name.encode()[i : i + 4].ljust(4, b"\0"), "little")
               for i in range(0, len(name.encode()), 4)]  # fmt: skip
        child = np.random.SeedSequence(self.root.entropy, spawn_key=(*self.root.spawn_key, *key))
        return np.random.default_rng(child)

    def sampler(self, name: str, dist: Distribution) -> Callable[[], float]:
        return sampler(dist, self.rng(name))

    def uniforms(self, name: str) -> Callable[[], float]:
        """U(0, 1) draws."""
        return _Buffered(Uniform(0.0, 1.0), self.rng(name))

    def poisson(self, name: str, lam: float) -> Callable[[], float]:
        """Poisson(lam) counts."""
        return _Counts(self.rng(name), lam)

    def exponentials(self, name: str) -> Callable[[], float]:
        """Exp(1) draws."""
        return _Buffered(Exponential(1.0), self.rng(name))
