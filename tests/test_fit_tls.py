"""Calibration of the ``tls`` stage: traced once per connection, costed per message."""

from __future__ import annotations

import pytest

from mailgate.calibration.fit import fit_traces
from mailgate.sim.scenario.records import HopRecord, StageSpan


def test_a_handshake_per_connection_becomes_its_share_per_message() -> None:
    # 40 messages over 10 connections: the first of each pays a 1.2 ms handshake
    hops = []
    for i in range(40):
        hop = HopRecord(f"m{i}", "inbound", "gateway1.0", 4.0, arrived=float(i))
        if i % 4 == 0:
            hop.stages["tls"] = StageSpan(i, i + 0.002, 0.0012)
        hop.stages["smtp_receive"] = StageSpan(i + 0.002, i + 0.003, 0.0005)
        hop.accepted, hop.left = i + 0.003, i + 0.01
        hops.append(hop)
    fit = fit_traces(hops)
    tls = fit.stages[("gateway1", "tls")]
    assert tls.n == 40
    assert tls.cpu_fixed_s == pytest.approx(0.0012 * 10 / 40)  # per message, not per handshake
    # a tier whose traces show no handshake at all gets no tls stage
    assert ("gateway1", "tls") in fit.stages and len(fit.stages) == 2
