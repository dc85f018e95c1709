"""The notebooks in notebooks/: committed without outputs, built on the public API only,
and (with MAILGATE_SLOW=1, as in CI) one of them executed to check it draws its figures.
CI runs all of them top to bottom with ``pytest --nbmake notebooks/`` (.ci/run); each
notebook saves its figures and asserts they are PNG images."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"capacity-planning.ipynb", "measured-vs-modelled.ipynb", "what-if.ipynb"}
# the public API: the package itself; its internals (mailgate.sim, …) are not for notebooks
PUBLIC = {"mailgate"}


def _cells(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_the_three_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert code
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert dirty == [], f"{path.name}: code cells {dirty} hold outputs (clear them)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_uses_only_the_public_api(path: Path) -> None:
    imported: set[str] = set()
    for cell in _cells(path):
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    ours = {m for m in imported if m.split(".")[0] in ("mailgate", "sim", "realnet")}
    assert ours <= PUBLIC, f"{path.name} imports {sorted(ours - PUBLIC)}"
    assert "mailgate" in ours


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MAILGATE_SLOW") != "1", reason="set MAILGATE_SLOW=1")
def test_measured_vs_modelled_draws_its_figures() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = ROOT / "notebooks" / "measured-vs-modelled.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs
        if "image/png" in o.get("data", {})
    ]  # fmt: skip
    assert len(images) == 2  # latency error, CPU per host
