"""The layers, read from the source: every import in ``sim/``, ``realnet/`` and
``mailgate/`` (lazy ones inside functions too) goes down the layers, never up, and no
two modules import each other round a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Bottom first; a module may import its own layer and the layers below it.
LAYERS = [
    ("mailgate.sim.scenario",),
    ("mailgate.sim.model",),
    ("mailgate.sim.analysis",),
    ("mailgate.realnet.addresses",),
    ("mailgate.realnet.relay", "mailgate.realnet.services"),
    ("mailgate.realnet.testbed",),
    ("mailgate.realnet.load",),
    ("mailgate.calibration",),
    ("mailgate.api", "mailgate.api_results"),  # the public Python API; the commands call it
    ("mailgate.commands", "mailgate.cli", "mailgate.__main__"),
]
# repository folder -> the package it installs as
FOLDERS = {"sim": "mailgate.sim", "realnet": "mailgate.realnet", "mailgate": "mailgate"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [FOLDERS[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for f in FOLDERS for p in sorted((ROOT / f).rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, resolved to module names of ours or outside ones."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    return {n: {m for m in _imports(n, p) if m in sources and m != n} for n, p in sources.items()}


def _rank(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def test_every_module_has_a_layer() -> None:
    loose = [m for m in _sources() if _rank(m) is None and m not in ("mailgate", "mailgate.sim",
             "mailgate.realnet")]  # fmt: skip
    assert loose == []


def test_imports_only_go_down() -> None:
    upward = [
        f"{a} -> {b}"
        for a, targets in _graph().items()
        for b in targets
        if _rank(a) is not None and _rank(b) is not None and _rank(b) > _rank(a)
    ]
    assert upward == []


def test_no_import_circles() -> None:
    graph = _graph()
    # a package's __init__ that re-exports its modules is not a circle with them
    edges = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in graph.items()}
    circles = [scc for scc in _strongly_connected(edges) if len(scc) > 1]
    assert circles == []


def test_no_top_level_sim_or_realnet_imports() -> None:
    """The distribution owns one import name: nothing imports ``sim`` or ``realnet``
    as top-level packages (they would load a second copy of every module)."""
    bad = []
    for folder in (*FOLDERS, "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for m in _imports("x", path):
                if m.split(".")[0] in ("sim", "realnet"):
                    bad.append(f"{path.relative_to(ROOT)}: {m}")
    assert bad == []


def test_scenario_modules_import_neither_simpy_nor_asyncio() -> None:
    modules = _imported_after("import mailgate.sim.scenario.loading, mailgate.sim.scenario.records")
    assert "simpy" not in modules and "asyncio" not in modules
    assert not any(m.startswith("mailgate.realnet") for m in modules)


def test_importing_the_model_does_not_import_realnet() -> None:
    modules = _imported_after("import mailgate.sim.model.simulate, mailgate.sim.analysis.offered")
    assert not any(m.startswith("mailgate.realnet") for m in modules)


def test_building_the_command_line_imports_no_domain_code() -> None:
    """Every command module declares its arguments without importing realnet, the
    calibration or the model: ``mailgate check`` stays quick."""
    modules = _imported_after("from mailgate.cli import build_parser; build_parser()")
    heavy = ("mailgate.realnet", "mailgate.calibration", "mailgate.sim.model", "asyncio")
    assert not [m for m in modules if m.startswith(heavy)]


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(run.stdout.split())


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative enough for a few hundred modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            out.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out
