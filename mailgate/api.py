"""The public Python API: load a scenario, run the model, search its capacity, compare two
runs, solve it analytically, write the HTML report. The ``mailgate`` command calls these
same functions (``mailgate/commands/``), so a notebook and the command line give the same
numbers for the same seed.

>>> import mailgate
>>> s = mailgate.load("peak-hour", mailboxes=20_000, hours=0.5)
>>> r = mailgate.run(s, seed=1)              # nothing written unless out= is given
>>> r.slo_ok, r.latency("inbound", "accepted_to_mailbox", "p95")

Everything returned wraps the plain dict the CLI writes (``results.json``,
``capacity.json``, ``compare --json``): see ``mailgate.api_results`` and docs/api.md.
Bad input raises ``mailgate.UserError`` with one line naming the file, key or argument.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mailgate.api_results import Calibration, CapacityResult, Comparison, RunResult, Solution
from mailgate.sim.scenario import Scenario, UserError, from_table, to_table
from mailgate.sim.scenario import load as load_file
from mailgate.sim.scenario.loading import dotted, merge

__all__ = [
    "Calibration", "CapacityResult", "Comparison", "RunResult", "Scenario", "Solution", "UserError",
    "capacity", "compare", "load", "read", "report", "run", "solve",
]  # fmt: skip

#: short names for the overrides used most, as keyword arguments of ``load`` and ``run``
SHORTCUTS = {
    "mailboxes": "population.mailboxes",
    "hours": "scenario.duration_h",
    "replications": "scenario.replications",
    "seed": "scenario.seed",
    "start_hour": "scenario.start_hour",
    "warmup_h": "scenario.warmup_h",
}

ScenarioLike = str | Path | Scenario
RunLike = str | Path | Mapping[str, Any] | RunResult


def overrides_of(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword overrides as dotted scenario keys: a shortcut (``mailboxes``), a dotted key
    (``**{"workload.spam_share": 0.5}``) or ``__`` for the dots
    (``gateways__gateway1__stages__antivirus__cpu_s=0.3``); None values are left out."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        out[SHORTCUTS.get(key, key.replace("__", "."))] = value
    return out


def load(scenario: ScenarioLike, /, **overrides: Any) -> Scenario:
    """A scenario from a file, a shipped name (``"drive-network"``) or a ``Scenario``, with
    ``overrides`` applied (see ``overrides_of``); validated as ``mailgate check`` does."""
    over = overrides_of(overrides)
    if isinstance(scenario, Scenario):
        if not over:
            return scenario
        table = to_table(scenario)
        return from_table(merge(table, _host_templates(table, dotted(over))), scenario.source)
    return load_file(scenario, over)


def _host_templates(table: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A loaded scenario has its hosts listed, and a listed host's own keys win over the
    ``host`` template: so a template override (``gateways__gateway1__host__cores=1``) is
    applied to each listed host here, as it would be in the file."""
    tiers = [(over.get("gateways", {}).get(n), table["gateways"].get(n)) for n in table["gateways"]]
    tiers.append((over.get("mailbox_server"), table.get("mailbox_server")))
    for tier_over, tier in tiers:
        if not tier_over or "host" not in tier_over or "hosts" in tier_over or not tier:
            continue
        template = tier_over.pop("host")
        tier_over["hosts"] = [merge(h, template) for h in tier.get("hosts", [])]
    return over


def run(
    scenario: ScenarioLike,
    *,
    seed: int | None = None,
    hours: float | None = None,
    replications: int | None = None,
    mailboxes: int | None = None,
    out: str | Path | None = None,
    plots: bool = True,
    report: bool = False,
    progress: bool = False,
    trace: str | Path | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
) -> RunResult:
    """Simulate ``scenario`` (``mailgate run``). ``seed`` defaults to the scenario's; the
    other keywords override it. With ``out``, writes ``results.json`` there, the PNG
    plots (``plots``) and ``report.html`` (``report``); without, writes nothing.
    Replications run on ``workers`` local processes (None: every core) or the Dask
    ``scheduler``, with the same results as one by one."""
    from mailgate.sim.analysis.parallel import executor
    from mailgate.sim.analysis.results_text import clean
    from mailgate.sim.model.simulate import simulate

    s = load(scenario, hours=hours, replications=replications, mailboxes=mailboxes)
    folder = None if out is None else _folder(out)  # a bad --out fails before the run
    with executor(workers, scheduler) as ex:
        results = clean(simulate(s, seed=seed, progress=progress, trace=trace, ex=ex).to_dict())
    if results.get("failure_watch"):
        from mailgate.sim.analysis.recovery import figures

        results["recovery"] = clean(figures(results))
    if folder is None:
        return RunResult(results)
    path = folder / "results.json"
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    files = [path]
    if report:
        from mailgate.sim.analysis.html_report import write_report

        files.append(write_report(results, folder / "report.html"))
    if plots:
        from mailgate.sim.analysis.plots import write_plots

        files += write_plots(results, folder)
    return RunResult(results, folder, tuple(files))


def read(path: str | Path) -> RunResult | CapacityResult | Calibration:
    """What a command wrote, read back: a run folder (``results.json``), a capacity folder
    (``capacity.json``) or a calibration folder (``calibration.json``), or the file."""
    from mailgate.sim.analysis.results_file import load_any

    calibration = _as_calibration(path)
    if calibration is not None:
        return calibration
    kind, data, file = load_any(path)
    if kind == "sweep":
        raise UserError(f"{file}: a sweep.json (read it as JSON; mailgate.report shows it)")
    if kind == "capacity":
        return CapacityResult(data, file.parent, (file,))
    return RunResult(data, file.parent, (file,))


def capacity(
    scenario: ScenarioLike,
    *,
    window: str | float = "peak",
    seed: int | None = None,
    max_replications: int = 6,
    tolerance: float = 0.05,
    n_minus_1: bool | Sequence[str] = False,
    workers: int | None = None,
    scheduler: str | None = None,
    out: str | Path | None = None,
    plots: bool = True,
    report: bool = False,
    log: Callable[[str], None] | None = None,
) -> CapacityResult:
    """The most mailboxes for which every SLO holds in ``window`` (``mailgate capacity``):
    ``"peak"`` or a clock hour. ``n_minus_1``: True (every gateway) or gateway names, to
    search again with one host of each down. Runs on ``workers`` local processes (default:
    every core) or the Dask ``scheduler``. With ``out``, writes ``capacity.json``, the plot
    ``capacity.png`` (``plots``) and ``report.html`` (``report``). ``log`` gets a progress
    line after each batch of replications."""
    from mailgate.sim.analysis.capacity import capacity as search
    from mailgate.sim.analysis.parallel import executor
    from mailgate.sim.analysis.results_text import clean

    folder = _folder(out) if out is not None else None
    if isinstance(n_minus_1, str):  # one gateway's name, not its letters
        n_minus_1 = [n_minus_1]
    gateways = list(n_minus_1) if isinstance(n_minus_1, Sequence) else bool(n_minus_1)
    with _scenario_file(scenario) as path, executor(workers, scheduler) as ex:
        d = search(
            path, ex, window=window, seed=seed, max_replications=max_replications,
            tolerance=tolerance, n_minus_1=gateways, log=log,
        )  # fmt: skip
    d = clean(d)
    if folder is None:
        return CapacityResult(d)
    files = [folder / "capacity.json"]
    files[0].write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
    if plots:
        from mailgate.sim.analysis.capacity_plot import write_capacity_plot

        files.append(write_capacity_plot(d, folder))
    if report:
        from mailgate.sim.analysis.html_report import write_report

        files.append(write_report(d, folder / "report.html"))
    return CapacityResult(d, folder, tuple(files))


def compare(
    base: RunLike,
    new: RunLike,
    tolerance: float = 0.05,
    labels: tuple[str, str] | None = None,
) -> Comparison:
    """Two runs side by side (``mailgate compare``): each a results folder, a
    ``results.json`` path, a results dict or a ``RunResult``. ``.regression`` is True (and
    ``.exit_code`` 4) when a difference is significant and worse beyond ``tolerance``."""
    from mailgate.sim.analysis.run_compare import compare as side_by_side

    if not tolerance > 0:
        raise UserError(f"tolerance: must be > 0, got {tolerance}")
    (b, b_label), (n, n_label) = _results(base, "base"), _results(new, "new")
    return Comparison(side_by_side(b, n, tolerance, labels=labels or (b_label, n_label)))


def solve(scenario: ScenarioLike, hour: int | None = None) -> Solution:
    """The analytic solver for one clock ``hour`` (``mailgate solve``; default: the first
    hour after the warm-up): utilisation, mean response times, the bottleneck."""
    from mailgate.sim.analysis.solve import solve as solve_hour

    return Solution(solve_hour(load(scenario), hour))


def report(
    sources: RunLike | CapacityResult | Calibration | Sequence[RunLike | CapacityResult],
    out: str | Path,
) -> Path:
    """One self-contained HTML page (``mailgate report``) on runs and capacity searches:
    folders, ``results.json``/``capacity.json`` paths, dicts or results of this API; or on
    one calibration (its folder, ``calibration.json`` or a ``Calibration``), alone."""
    from mailgate.sim.analysis.html_report import write_report

    many = isinstance(sources, Sequence) and not isinstance(sources, str)
    items = list(sources) if many else [sources]  # type: ignore[list-item]
    calibrations = [c for c in map(_as_calibration, items) if c is not None]
    if calibrations:
        if len(items) > 1:
            raise UserError("report: a calibration folder is reported on its own: give one DIR")
        from mailgate.calibration.html_report import write_calibration_report

        return write_calibration_report(calibrations[0].data, out)
    return write_report([_data(x) for x in items], out)


# ---------------------------------------------------------------- helpers

CALIBRATION = "calibration.json"
#: the keys of calibration.json that ``Calibration`` reads
CALIBRATION_KEYS = ("ok", "failures", "latency", "utilisation", "saturation")


def _calibration(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    missing = [k for k in CALIBRATION_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise UserError(f"{path}: not a calibration.json (missing {', '.join(missing)})")
    return data


def _as_calibration(x: object) -> Calibration | None:
    """``x`` as a calibration if it is one (or a folder or file of one), else None."""
    if isinstance(x, Calibration):
        return x
    if not isinstance(x, (str, Path)):
        return None
    p = Path(x)
    file = p / CALIBRATION if p.is_dir() else p
    return Calibration(_calibration(file)) if file.name == CALIBRATION and file.is_file() else None


def _folder(out: str | Path) -> Path:
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {folder}: cannot create it: {e.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"--out {folder}: the folder is not writable")
    return folder


@contextlib.contextmanager
def _scenario_file(scenario: ScenarioLike) -> Iterator[str | Path]:
    """A path the capacity search can reload with its own overrides: the file as given,
    or a ``Scenario`` object written out (complete, no ``extends``) for the search."""
    if not isinstance(scenario, Scenario):
        yield scenario
        return
    import tomli_w

    with tempfile.TemporaryDirectory(prefix="mailgate-") as tmp:
        path = Path(tmp) / f"{scenario.scenario.name}.toml"
        path.write_text(tomli_w.dumps(to_table(scenario)), encoding="utf-8")
        yield path


def _results(x: RunLike, label: str) -> tuple[dict[str, Any], str]:
    """A run's results dict and the label ``compare`` shows for it."""
    from mailgate.sim.analysis.results_file import load_results

    if isinstance(x, RunResult):
        return x.results, str(x.out) if x.out else x.name
    if isinstance(x, Mapping):
        return dict(x), str(x.get("name", label))
    return load_results(x), str(x)


def _data(x: RunLike | CapacityResult) -> dict[str, Any]:
    """The dict behind anything ``report`` takes."""
    from mailgate.sim.analysis.results_file import load_any

    if isinstance(x, RunResult):
        return x.results
    if isinstance(x, CapacityResult):
        return x.data
    if isinstance(x, Mapping):
        return dict(x)
    return load_any(x)[1]
