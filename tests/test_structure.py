"""Small rooms: no module over 450 lines and no class over 250 in ``sim/``, ``realnet/``
and ``mailgate/`` (the limits of the design notes; a module that grows past them holds
more than one idea and should be split, not stretched)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250
FOLDERS = ("sim", "realnet", "mailgate")


def _sources() -> list:
    return [p for f in FOLDERS for p in sorted((ROOT / f).rglob("*.py"))]


def test_no_module_over_450_lines() -> None:
    big = {}
    for path in _sources():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            big[str(path.relative_to(ROOT))] = n
    assert big == {}


def test_no_class_over_250_lines() -> None:
    big = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_CLASS_LINES:
                    big[f"{path.relative_to(ROOT)}:{node.name}"] = n
    assert big == {}
