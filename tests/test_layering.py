"""Layering: the model never depends on realnet, and the scenario format on neither
SimPy nor asyncio (realnet builds from it too)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(run.stdout.split())


def test_scenario_modules_import_neither_simpy_nor_asyncio() -> None:
    modules = _imported_after("import sim.topology, sim.scenario, sim.records")
    assert "simpy" not in modules and "asyncio" not in modules
    assert not any(m == "realnet" or m.startswith("realnet.") for m in modules)


def test_no_module_in_sim_imports_realnet() -> None:
    """Static check over every file, including modules no test happens to import."""
    offenders = []
    for path in sorted((ROOT / "sim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "realnet"]
    assert offenders == []


def test_importing_sim_does_not_import_realnet() -> None:
    modules = _imported_after("import sim, sim.summary, sim.offered")
    assert not any(m.startswith("realnet") for m in modules)
