"""How the schema declares a field: ``spec`` (a documented default with limits) and
``required`` (a key the file must give). Both return ``dataclasses.field`` with the
``doc`` and the limits (``min``, ``max``, ``gt``, ``choices``, ``parse``, ``nonempty``)
in its metadata: ``schema.build`` checks the limits, and the ``doc`` is the key's
reference text."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def spec(default: Any = None, *, doc: str = "", factory: Any = None, **limits: Any) -> Any:
    """A dataclass field with a documented default and validation limits."""
    meta = {"doc": doc, **limits}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def required(*, doc: str = "", **limits: Any) -> Any:
    """A field the scenario must give."""
    return field(metadata={"doc": doc, **limits})
