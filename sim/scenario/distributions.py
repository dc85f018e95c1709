"""Probability distributions as data.

A scenario writes a distribution as a TOML table such as
``{dist = "lognormal", median = 0.2, sigma = 0.5}`` or as a bare number
(a constant). Each object samples from a caller-owned
``numpy.random.Generator`` and knows its exact ``mean`` and ``variance`` so
results can be checked against queueing formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

import numpy as np


class Distribution(Protocol):
    """What the model needs from a distribution."""

    @property
    def mean(self) -> float: ...

    @property
    def variance(self) -> float: ...

    def sample(self, rng: np.random.Generator) -> float: ...

    def to_table(self) -> dict[str, Any] | float: ...


class _Base:
    """Shared helpers: the TOML form of a distribution is its dataclass fields."""

    name: ClassVar[str]

    def to_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {"dist": self.name}
        table.update({f.name: getattr(self, f.name) for f in fields(self)})  # type: ignore[arg-type]
        return table


@dataclass(frozen=True, slots=True)
class Constant(_Base):
    value: float
    name: ClassVar[str] = "constant"

    @property
    def mean(self) -> float:
        return self.value

    @property
    def variance(self) -> float:
        return 0.0

    def sample(self, rng: np.random.Generator) -> float:
        return self.value

    def to_table(self) -> float:  # type: ignore[override]
        return self.value


@dataclass(frozen=True, slots=True)
class Exponential(_Base):
    mean_value: float
    name: ClassVar[str] = "exponential"

    @property
    def mean(self) -> float:
        return self.mean_value

    @property
    def variance(self) -> float:
        return self.mean_value**2

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.exponential(self.mean_value))

    def to_table(self) -> dict[str, Any]:
        return {"dist": self.name, "mean": self.mean_value}


@dataclass(frozen=True, slots=True)
class Uniform(_Base):
    low: float
    high: float
    name: ClassVar[str] = "uniform"

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def variance(self) -> float:
        return (self.high - self.low) ** 2 / 12

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True, slots=True)
class Lognormal(_Base):
    """Lognormal given by its median and the sigma of the underlying normal."""

    median: float
    sigma: float
    name: ClassVar[str] = "lognormal"

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    @property
    def variance(self) -> float:
        s2 = self.sigma**2
        return (math.exp(s2) - 1) * self.median**2 * math.exp(s2)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.lognormal(math.log(self.median), self.sigma))


@dataclass(frozen=True, slots=True)
class Geometric(_Base):
    """Whole numbers 1, 2, 3, ... with the given mean (recipients per message)."""

    mean_value: float
    name: ClassVar[str] = "geometric"

    @property
    def mean(self) -> float:
        return self.mean_value

    @property
    def variance(self) -> float:
        p = 1 / self.mean_value
        return (1 - p) / p**2

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.geometric(1 / self.mean_value))

    def to_table(self) -> dict[str, Any]:
        return {"dist": self.name, "mean": self.mean_value}


@dataclass(frozen=True, slots=True)
class LognormalPareto(_Base):
    """Message sizes: a lognormal body, a Pareto tail, a hard cap.

    With probability ``tail_share`` a size is drawn from a Pareto with shape
    ``tail_alpha`` starting at ``tail_min``; otherwise from the lognormal.
    Every draw is capped at ``cap`` (the message size limit). Moments are
    exact for the capped mixture.
    """

    median: float
    sigma: float
    tail_share: float
    tail_alpha: float
    tail_min: float
    cap: float
    name: ClassVar[str] = "lognormal_pareto"

    def _moment(self, k: int) -> float:
        return (1 - self.tail_share) * _capped_lognormal_moment(
            self.median, self.sigma, self.cap, k
        ) + self.tail_share * _capped_pareto_moment(self.tail_alpha, self.tail_min, self.cap, k)

    @property
    def mean(self) -> float:
        return self._moment(1)

    @property
    def variance(self) -> float:
        return self._moment(2) - self._moment(1) ** 2

    def sample(self, rng: np.random.Generator) -> float:
        if rng.random() < self.tail_share:
            value = self.tail_min * (1 - rng.random()) ** (-1 / self.tail_alpha)
        else:
            value = rng.lognormal(math.log(self.median), self.sigma)
        return float(min(value, self.cap))


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _capped_lognormal_moment(median: float, sigma: float, cap: float, k: int) -> float:
    """E[min(X, cap)^k] for X lognormal."""
    mu = math.log(median)
    z = (math.log(cap) - mu) / sigma
    below = math.exp(k * mu + (k * sigma) ** 2 / 2) * _normal_cdf(z - k * sigma)
    return below + cap**k * (1 - _normal_cdf(z))


def _capped_pareto_moment(alpha: float, xmin: float, cap: float, k: int) -> float:
    """E[min(X, cap)^k] for X Pareto(alpha, xmin)."""
    if cap <= xmin:
        return cap**k
    tail = (xmin / cap) ** alpha  # P(X > cap)
    if math.isclose(alpha, k):
        below = alpha * xmin**k * math.log(cap / xmin)
    else:
        below = alpha * xmin**alpha * (cap ** (k - alpha) - xmin ** (k - alpha)) / (k - alpha)
    return below + cap**k * tail


# name -> (class, {toml key: constructor argument})
_KINDS: dict[str, tuple[type, dict[str, str]]] = {
    "constant": (Constant, {"value": "value"}),
    "exponential": (Exponential, {"mean": "mean_value"}),
    "uniform": (Uniform, {"low": "low", "high": "high"}),
    "lognormal": (Lognormal, {"median": "median", "sigma": "sigma"}),
    "geometric": (Geometric, {"mean": "mean_value"}),
    "lognormal_pareto": (
        LognormalPareto,
        {
            "median": "median",
            "sigma": "sigma",
            "tail_share": "tail_share",
            "tail_alpha": "tail_alpha",
            "tail_min": "tail_min",
            "cap": "cap",
        },
    ),
}


class DistributionError(ValueError):
    """A distribution table is malformed; ``key`` names the offending key."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


def parse_distribution(value: Any) -> Distribution:
    """Build a distribution from its TOML form (a number or a ``dist`` table)."""
    if isinstance(value, bool):
        raise DistributionError(None, f"expected a number or a {{dist = ...}} table, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise DistributionError(None, f"must be ≥ 0, got {value}")
        return Constant(float(value))
    if not isinstance(value, dict):
        raise DistributionError(None, f"expected a number or a {{dist = ...}} table, got {value!r}")
    kind = value.get("dist")
    if kind not in _KINDS:
        raise DistributionError(
            "dist", f"unknown distribution {kind!r}; expected one of {', '.join(_KINDS)}"
        )
    cls, params = _KINDS[kind]
    unknown = set(value) - set(params) - {"dist"}
    if unknown:
        key = sorted(unknown)[0]
        raise DistributionError(key, f"unknown parameter for {kind}; expected {', '.join(params)}")
    args: dict[str, float] = {}
    for key, arg in params.items():
        if key not in value:
            raise DistributionError(key, f"missing parameter for {kind}")
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise DistributionError(key, f"expected a number, got {number!r}")
        if number < 0:
            raise DistributionError(key, f"must be ≥ 0, got {number}")
        args[arg] = float(number)
    _check_shape(kind, args)
    return cls(**args)


def _check_shape(kind: str, a: dict[str, float]) -> None:
    positive = {
        "exponential": ["mean_value"],
        "lognormal": ["median"],
        "lognormal_pareto": ["median", "tail_alpha", "tail_min", "cap"],
    }.get(kind, [])
    for arg in positive:
        if a[arg] <= 0:
            raise DistributionError(_toml_key(kind, arg), f"must be > 0, got {a[arg]}")
    if kind == "uniform" and a["high"] < a["low"]:
        raise DistributionError("high", f"must be ≥ low ({a['low']}), got {a['high']}")
    if kind == "geometric" and a["mean_value"] < 1:
        raise DistributionError("mean", f"must be ≥ 1, got {a['mean_value']}")
    if kind == "lognormal_pareto" and a["tail_share"] > 1:
        raise DistributionError("tail_share", f"must be ≤ 1, got {a['tail_share']}")


def _toml_key(kind: str, arg: str) -> str:
    return next(k for k, v in _KINDS[kind][1].items() if v == arg)
