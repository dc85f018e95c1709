"""A real Postfix chain on loopback (benchmarks/postfix_chain.py) writes a log that
``import-maillog`` reads and stitches end to end: the sample logs' pipeline, live."""

from __future__ import annotations

import pytest

from benchmarks import stockpostfix

pytestmark = [
    pytest.mark.realnet,
    pytest.mark.slow,
    pytest.mark.skipif(not stockpostfix.available(), reason="needs Debian postfix and root"),
]


def test_live_chain_log_is_stitched_end_to_end(tmp_path) -> None:
    from benchmarks.postfix_chain import run_once, write_log
    from mailgate.calibration.maillog.aggregate import aggregate, read_logs

    lines = run_once(rate=10.0, count=30, max_s=10.0, seed=3)
    path = tmp_path / "chain.log.gz"
    write_log(path, lines, gz=True)
    result = aggregate(read_logs([path]))
    st = result["stitching"]
    assert result["skipped"] == 0
    assert st["messages"] == 30 and st["end_to_end"] == 30, st
    assert list(result["tiers"]) == ["gateway0", "gateway1", "mailbox"]
    assert result["end_to_end"]["inbound"]["n"] >= 25
