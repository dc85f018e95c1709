"""The relay benchmark still runs (tiny counts; the figures themselves are not asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import stockpostfix

pytestmark = [pytest.mark.realnet, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    not stockpostfix.available() or shutil.which("smtp-source") is None,
    reason="needs root and Debian postfix (smtp-source, smtp-sink)",
)
def test_bench_relay_smoke() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_relay.py"),
            "--messages",
            "60",
            "--rounds",
            "1",
            "--probes",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["relay"]["ours"]["msgs_per_s"] > 0 and out["relay"]["postfix"]["msgs_per_s"] > 0
    assert out["relay"]["ratio"] > 0
    probe = out["probe"]
    # each probe in its mailbox before the POP client read it (medians of two different
    # sets of probes need not be ordered: a probe's trace may be written late)
    assert probe["mailbox_traced"] >= 1 and probe["mailbox_before_receive"] is True
    assert probe["send_to_mailbox_p50_ms"] > 0
