"""Load a scenario file: parse TOML → resolve ``extends`` → fill defaults →
validate → build a ``root.Scenario``. A file is given by path or, for the
scenarios that ship with mailgate, by name (``drive-network``), in ``load`` and in
``extends`` alike.

Every user error becomes a ``ScenarioError`` naming the file, the key path and
what is wrong, so the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from mailgate.sim.scenario.checks import check
from mailgate.sim.scenario.errors import UserError
from mailgate.sim.scenario.root import Scenario
from mailgate.sim.scenario.schema import SchemaError, build, join
from mailgate.sim.scenario.shipped import closest_names, is_bare_name, shipped_names, shipped_path


class ScenarioError(UserError, ValueError):
    """A scenario the user must fix: ``file: key: message``."""

    def __init__(self, file: str | Path, key: str, message: str) -> None:
        self.file, self.key, self.message = str(file), key, message
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------- reading


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ScenarioError(path, "", "no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(path, "", f"not valid TOML: {e}") from None
    except OSError as e:
        raise ScenarioError(path, "", f"cannot read: {e.strerror}") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` onto ``base``: tables merge key by key, the rest replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """The file and everything it ``extends``, base first, each with its path."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ScenarioError(path, "extends", f"extends itself in a cycle: {chain}")
    table = read_toml(path)
    parent = table.pop("extends", None)
    if parent is None:
        return [(path, table)]
    if not isinstance(parent, str):
        raise ScenarioError(path, "extends", f"expected a file name, got {parent!r}")
    return [*read_layers(extended_file(path, parent), (*seen, path)), (path, table)]


def extended_file(path: Path, parent: str) -> Path:
    """The file that ``extends = parent`` in ``path`` names: the file next to ``path``,
    else (a bare name) the shipped scenario of that name."""
    beside = path.parent / parent
    if beside.exists():
        return beside
    shipped = shipped_path(parent)
    if shipped is None:
        unknown = f"no such file {parent!r} (next to {path.name})"
        raise ScenarioError(path, "extends", unknown + _shipped_hint(parent))
    return shipped


def sets_key(table: Mapping[str, Any], key: str) -> bool:
    """Whether a raw table sets the dotted ``key`` (array indices and all)."""
    node: Any = table
    for part in re.findall(r"[^.\[\]]+", key):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def default_topology() -> dict[str, Any]:
    """The source's five gateways and mailbox server (sim/scenario/default_topology.toml)."""
    return _base("default_topology.toml")


def stations_base() -> dict[str, Any]:
    """What a ``kind = "stations"`` scenario starts from (sim/scenario/stations_base.toml)."""
    return _base("stations_base.toml")


def _base(name: str) -> dict[str, Any]:
    text = resources.files("mailgate.sim.scenario").joinpath(name).read_text("utf-8")
    return tomllib.loads(text)


#: A station is limited by its cores only: sessions and delivery slots never run out.
STATION_HOST = {
    "session_limit": 1_000_000_000,
    "destination_concurrency": 1_000_000_000,
    "delivery_limit": 1_000_000_000,
}


def dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"population.mailboxes": 5}`` → ``{"population": {"mailboxes": 5}}``."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


# ---------------------------------------------------------------- filling


def expand_hosts(tier: dict[str, Any], path: str) -> dict[str, Any]:
    """Turn ``host = {...}`` (template) and ``hosts = N | [{...}, ...]`` into a host list."""
    tier = dict(tier)
    template = tier.pop("host", {})
    if not isinstance(template, dict):
        raise SchemaError(join(path, "host"), f"expected a table, got {template!r}")
    hosts = tier.get("hosts", 2)
    if isinstance(hosts, bool) or not isinstance(hosts, int | list):
        raise SchemaError(
            join(path, "hosts"), f"expected a host count or a list of host tables, got {hosts!r}"
        )
    if isinstance(hosts, int):
        if hosts < 1:
            raise SchemaError(join(path, "hosts"), f"must be ≥ 1, got {hosts}")
        hosts = [{}] * hosts
    expanded = []
    for i, host in enumerate(hosts):
        if not isinstance(host, dict):
            raise SchemaError(join(join(path, "hosts"), i), "expected a table")
        expanded.append({**template, **host})
    tier["hosts"] = expanded
    return tier


def fill(table: dict[str, Any]) -> dict[str, Any]:
    """Merge the scenario over its base (the default topology, or for ``kind =
    "stations"`` the stations base) and expand host lists and stations' ``service``."""
    meta = table.get("scenario")
    stations = isinstance(meta, dict) and meta.get("kind") == "stations"
    table = merge(stations_base() if stations else default_topology(), table)
    gateways = table.get("gateways", {})
    if not isinstance(gateways, dict):
        raise SchemaError("gateways", "expected a table of gateways")
    for name, tier in gateways.items():
        if not isinstance(tier, dict):
            raise SchemaError(join("gateways", name), "expected a table")
        if stations:
            tier = station_tier(tier, join("gateways", name))
        gateways[name] = expand_hosts(tier, join("gateways", name))
    if not isinstance(table.get("mailbox_server"), dict):
        raise SchemaError("mailbox_server", "expected a table")
    table["mailbox_server"] = expand_hosts(table["mailbox_server"], "mailbox_server")
    return table


def station_tier(tier: dict[str, Any], path: str) -> dict[str, Any]:
    """A station's short form: ``service = <distribution>`` is its one stage's CPU
    (``stages.service.cpu_s``); its hosts are limited by their cores only."""
    tier = dict(tier)
    if "service" in tier:
        if "stages" in tier:
            raise SchemaError(join(path, "service"), "give either service or stages, not both")
        tier["stages"] = {"service": {"cpu_s": tier.pop("service")}}
    template = tier.get("host", {})
    if isinstance(template, dict):
        tier["host"] = {**STATION_HOST, **template}
    return tier


# ---------------------------------------------------------------- front door


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load, fill, validate and build a scenario; ``overrides`` use dotted keys.

    ``path`` is a scenario file, or the name of a shipped scenario (``"drive-network"``
    or ``"drive-network.toml"``) when no file of that name exists. An error names the
    last file in the ``extends`` chain that sets the bad key.
    """
    path = locate(path)
    layers = read_layers(path)
    table: dict[str, Any] = {}
    for _, layer in layers:
        table = merge(table, layer)
    if overrides:
        table = merge(table, dotted(overrides))
    try:
        return from_table(table, source=str(path))
    except ScenarioError as e:
        culprit = next((p for p, t in reversed(layers) if sets_key(t, e.key)), None)
        if culprit is None or culprit == path.resolve():
            raise
        raise ScenarioError(_relative(culprit), e.key, e.message) from None


def locate(path: str | Path) -> Path:
    """The file ``path`` stands for: an existing file as given; else, for a bare name
    (no folder part), the shipped scenario of that name."""
    given = Path(path)
    if given.is_file() or not is_bare_name(str(path)):
        return given
    shipped = shipped_path(str(path))
    if shipped is None:
        raise ScenarioError(path, "", "no such file" + _shipped_hint(str(path)))
    return shipped


def _shipped_hint(name: str) -> str:
    """What to say when a bare name is neither a file nor a shipped scenario."""
    if not is_bare_name(name):
        return ""
    unknown = ", and no shipped scenario of that name"
    close = closest_names(name)
    if close:
        return f"{unknown} (did you mean {' or '.join(map(repr, close))}?)"
    return f"{unknown}; the shipped ones are {', '.join(shipped_names())}"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def from_table(table: Mapping[str, Any], source: str = "<table>") -> Scenario:
    """Build a scenario from an already-parsed table (no ``extends``)."""
    try:
        filled = fill(dict(table))
        scenario = build(Scenario, filled)
        check(scenario)
    except SchemaError as e:
        raise ScenarioError(source, e.key, e.message) from None
    return dataclasses.replace(scenario, source=source)
