"""``kind = "stations"``: the short form of a textbook scenario and its rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.sim.scenario import ScenarioError, from_table, load
from mailgate.sim.scenario.distributions import Exponential

VALIDATION = Path(__file__).resolve().parent.parent / "scenarios" / "validation"


def stations(**gateways: dict) -> dict:
    return {"scenario": {"name": "t", "kind": "stations"}, "gateways": gateways}


def test_a_station_is_one_service_stage_and_nothing_else() -> None:
    s = from_table(stations(q={"role": "station", "service": {"dist": "exponential", "mean": 0.1}}))
    assert list(s.gateways) == ["q"]  # no default topology merged in
    assert s.mx == "q" and s.inbound_path == ["q"]
    assert s.gateways["q"].stages["service"].cpu_s == Exponential(0.1)
    host = s.gateways["q"].hosts[0]
    assert host.session_limit >= 10**9 and host.delivery_limit >= 10**9
    assert host.destination_concurrency >= 10**9
    w = s.workload
    assert (w.spam_share, w.virus_share, w.outbound_per_mailbox_day) == (0.0, 0.0, 0.0)
    assert w.diurnal.inbound.name == "flat" and s.pop.active_share == 0.0
    assert s.daily_messages("inbound") == pytest.approx(86_400.0)  # inbound_per_s = 1


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (stations(q={"role": "inbound_auth"}), "gateways.q.role"),
        (stations(q={"role": "station", "service": 0.1, "stages": {}}), "gateways.q.service"),
        (stations(q={"role": "station", "service": 0.1, "next_hop": "mailbox"}), "gateways"),
        ({"scenario": {"name": "t"}, "gateways": {"q": {"role": "station"}}}, "gateways.q.role"),
    ],
)
def test_stations_rules_name_the_key(table: dict, key: str) -> None:
    with pytest.raises(ScenarioError) as e:
        from_table(table)
    assert e.value.key == key


def test_shipped_validation_scenarios_load() -> None:
    names = sorted(p.stem for p in VALIDATION.glob("*.toml"))
    assert names == ["jackson-tandem", "md1", "mg1", "mg1-ps", "mm1", "mm1-hog", "mmc"]
    for name in names:
        assert load(VALIDATION / f"{name}.toml").scenario.kind == "stations"
