"""The model's trace: the same HopRecord / MessageRecord format realnet writes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mailgate.sim.model.simulate import simulate
from mailgate.sim.scenario.loading import load
from mailgate.sim.scenario.records import read_hops, read_messages
from mailgate.sim.scenario.topology import STAGES

ROOT = Path(__file__).resolve().parents[1]


def test_trace_files_carry_the_scenario_costs(tmp_path: Path) -> None:
    s = load(ROOT / "scenarios" / "peak-hour.toml", {
        "population.mailboxes": 300, "scenario.duration_h": 0.2, "scenario.warmup_h": 0.0,
    })  # fmt: skip
    path = tmp_path / "hops.jsonl"
    d = simulate(s, trace=path).to_dict()
    hops = list(read_hops(path))
    msgs = list(read_messages(tmp_path / "hops.messages.jsonl"))
    assert hops and msgs
    # every finished message has one record; outcomes match the counts
    outcomes = Counter(m.outcome for m in msgs)
    c = d["counts"]
    assert outcomes["mailbox"] + outcomes["remote"] == c["delivered"]
    assert outcomes["rejected"] == c["rejected"]
    for hop in hops:
        assert set(hop.stages) <= set(STAGES)
        assert hop.arrived <= (hop.accepted or hop.arrived) <= hop.left
        for span in hop.stages.values():
            assert hop.arrived <= span.start <= span.end <= hop.left + 1e-12
    # CPU per stage is the scenario's fixed + per-KB cost (constants in this scenario)
    av = s.tiers["gateway1"].cost("antivirus")
    seen = 0
    for hop in hops:
        if hop.host.startswith("gateway1") and "antivirus" in hop.stages:
            expected = av.cpu_s.mean + av.cpu_per_kb_s * hop.size_kb
            assert hop.stages["antivirus"].cpu_s == pytest.approx(expected, rel=1e-12)
            seen += 1
    assert seen > 10
