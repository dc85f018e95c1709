"""The scenarios that ship with mailgate, by name.

The repository's ``scenarios/`` folder installs as the package ``mailgate.scenarios``
(its ``*.toml`` files are package data). This module lists them with a one-line
description and finds one by its bare name, so that ``load("drive-network")`` and
``extends = "drive-network"`` work from any folder, with or without a checkout.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: The package whose data files are the shipped scenarios.
PACKAGE = "mailgate.scenarios"
SUFFIX = ".toml"


@dataclass(frozen=True)
class ShippedScenario:
    """One shipped scenario file."""

    name: str  # the file name without .toml, e.g. "drive-network"
    path: Path  # the file itself (in the checkout or in site-packages)
    description: str  # one line: the file's [scenario] description, whitespace folded


def shipped_folder() -> Path:
    """The folder that holds the shipped scenario files."""
    folder = resources.files(PACKAGE)
    # extends between shipped files needs real siblings on disk, so a zipped
    # install (which files() would hand out as a zip path) is not supported
    if not isinstance(folder, Path):
        raise RuntimeError(f"{PACKAGE} is not a folder on disk ({folder!r})")
    return folder


def shipped_scenarios() -> list[ShippedScenario]:
    """Every shipped scenario, sorted by name."""
    return [
        ShippedScenario(path.stem, path, describe(path))
        for path in sorted(shipped_folder().glob(f"*{SUFFIX}"))
    ]


def shipped_names() -> list[str]:
    """The names of the shipped scenarios, sorted."""
    return sorted(path.stem for path in shipped_folder().glob(f"*{SUFFIX}"))


def is_bare_name(text: str) -> bool:
    """Whether ``text`` could be a shipped name: no folder part, not empty, not ``.``/``..``."""
    return bool(text) and text not in (".", "..") and Path(text).name == text


def shipped_path(name: str) -> Path | None:
    """The shipped file called ``name`` (``"drive-network"`` or ``"drive-network.toml"``),
    or None when there is none."""
    if not is_bare_name(name):
        return None
    stem = name.removesuffix(SUFFIX)
    path = shipped_folder() / f"{stem}{SUFFIX}"
    return path if path.is_file() else None


def closest_names(name: str, n: int = 3) -> list[str]:
    """Up to ``n`` shipped names that look like ``name``, closest first."""
    return difflib.get_close_matches(name.removesuffix(SUFFIX), shipped_names(), n=n, cutoff=0.5)


def describe(path: Path) -> str:
    """A scenario file's one-line description: its own ``[scenario] description``, or
    else the first paragraph of its leading comment, with whitespace folded."""
    text = path.read_text(encoding="utf-8")
    try:
        meta = tomllib.loads(text).get("scenario", {})
    except tomllib.TOMLDecodeError:
        meta = {}
    description = meta.get("description", "") if isinstance(meta, dict) else ""
    if not isinstance(description, str) or not description.strip():
        description = " ".join(_leading_comment(text))
    return " ".join(description.split())


def _leading_comment(text: str) -> list[str]:
    """The lines of the comment paragraph a file starts with, without the ``#``."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if not body:
            break
        out.append(body)
    return out
