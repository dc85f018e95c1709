"""The services benchmark runs and reports every operation (a smoke test, two repetitions)."""

from __future__ import annotations

import re

import pytest

from benchmarks.bench_services import main

pytestmark = pytest.mark.realnet


def test_bench_services_reports_each_operation(capsys):
    assert main(["--n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9
    for line in lines:
        assert re.search(r"\s\d+\.\d{3} ms$", line), line
    assert any(line.startswith("POP3 session") for line in lines)
