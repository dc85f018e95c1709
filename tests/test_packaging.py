"""The distribution's package list: every package folder of the checkout is installed
under the one import name (a folder missing from pyproject's list would be missing
from the wheel; scripts/check-wheel then checks the built artefact itself)."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT

FOLDERS = {"sim": "mailgate.sim", "realnet": "mailgate.realnet", "scenarios": "mailgate.scenarios"}


def test_every_package_folder_is_in_the_wheel() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]
    assert setuptools["package-dir"] == {v: k for k, v in FOLDERS.items()}
    found = {"mailgate"}
    for folder in (*FOLDERS, "mailgate"):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            top = FOLDERS.get(rel[0], rel[0])
            found.add(".".join([top, *rel[1:]]))
    assert sorted(setuptools["packages"]) == sorted(found)
