"""The scenario format: every shipped scenario loads, defaults fill as documented,
and each kind of user error names the file, the key and what is wrong."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mailgate.sim.scenario import ROLE_STAGES, Scenario
from mailgate.sim.scenario.distributions import Constant, Geometric, Lognormal
from mailgate.sim.scenario.loading import ScenarioError, load
from tests.conftest import ROOT, SCENARIOS


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_shipped_scenario_loads(path: Path) -> None:
    s = load(path)
    assert isinstance(s, Scenario)
    assert s.scenario.name == path.stem
    assert s.inbound_path[0] == s.mx and s.inbound_path[-1] == "mailbox"
    assert s.outbound_path[0] == "mailbox"
    for tier in s.tiers.values():
        assert set(tier.stages) <= set(ROLE_STAGES[tier.role])


def test_minimal_scenario_gets_the_source_topology_and_documented_defaults(write_scenario) -> None:
    s = load(write_scenario('[scenario]\nname = "minimal"\n'))
    assert list(s.gateways) == [f"gateway{i}" for i in range(5)]
    assert [len(t.hosts) for t in s.gateways.values()] == [2] * 5
    assert [t.role for t in s.gateways.values()] == [
        "inbound_auth",
        "inbound_av",
        "outbound_av",
        "outbound_sign",
        "fallback_mx",
    ]
    assert s.gateways["gateway3"].fallback == "gateway4"
    assert len(s.mailbox_server.hosts) == 1 and s.mailbox_server.hosts[0].cores == 8
    assert s.mailbox_server.hosts[0].session_limit == 200
    assert s.gateways["gateway0"].hosts[0].session_limit == 100  # Postfix default_process_limit
    assert s.gateways["gateway0"].hosts[0].destination_concurrency == 20  # ..._concurrency_limit
    assert s.gateways["gateway0"].hosts[0].delivery_limit == 100  # smtp agents: process limit
    assert s.population.mailboxes == 30_000
    assert s.workload.spam_share == 0.45
    assert s.workload.outbound_per_mailbox_day == 2.0
    assert s.workload.recipients == Geometric(1.2)
    assert s.internet.remote_mta_s == Lognormal(0.3, 0.6)
    assert (s.retry.minimal_backoff_s, s.retry.maximal_backoff_s) == (300.0, 4000.0)
    assert s.retry.max_queue_lifetime_s == 5 * 86400
    assert s.limits.message_size_limit_bytes == 10_240_000
    assert [o.max_s for o in s.slo.objectives] == [60.0] * 3
    assert s.slo.selftest_max_s == 1.0
    assert s.gateways["gateway0"].stages["spf"].dns_lookups == 1
    assert s.network.dns_s == Constant(0.001)


def test_baseline_states_the_code_defaults(write_scenario) -> None:
    """drive-network.toml documents every default: the two must not drift apart."""
    minimal = load(write_scenario('[scenario]\nname = "drive-network"\n'))
    baseline = load(ROOT / "scenarios" / "drive-network.toml")
    for section in (
        "population",
        "workload",
        "pop",
        "internet",
        "network",
        "gateways",
        "mailbox_server",
        "retry",
        "limits",
        "slo",
        "deployment",
    ):
        assert getattr(baseline, section) == getattr(minimal, section), section


def test_extends_overrides_only_what_it_names() -> None:
    base = load(ROOT / "scenarios" / "drive-network.toml")
    growth = load(ROOT / "scenarios" / "growth-100k.toml")
    assert growth.population.mailboxes == 100_000
    assert (
        dataclasses.replace(
            growth, population=base.population, scenario=base.scenario, source=base.source
        )
        == base
    )


def test_host_template_and_per_host_overrides(write_scenario) -> None:
    s = load(
        write_scenario(
            '[scenario]\nname = "x"\n'
            "[gateways.gateway1]\nhost = { cores = 8 }\nhosts = [{}, { cores = 2 }, {}]\n"
        )
    )
    assert [h.cores for h in s.gateways["gateway1"].hosts] == [8, 2, 8]
    assert "gateway1.2" in s.host_ids


def test_overrides_use_dotted_keys() -> None:
    s = load(
        ROOT / "scenarios" / "drive-network.toml",
        {"population.mailboxes": 5, "scenario.duration_h": 0.5},
    )
    assert (s.population.mailboxes, s.scenario.duration_h) == (5, 0.5)


def test_diurnal_weights_are_normalised_to_mean_one(write_scenario) -> None:
    weights = [1] * 12 + [3] * 12
    s = load(write_scenario(f'[scenario]\nname = "x"\n[workload.diurnal]\ninbound = {weights}\n'))
    profile = s.workload.diurnal.inbound
    assert sum(profile.weights) == pytest.approx(24)
    assert profile.factor(13) == pytest.approx(1.5) and profile.factor(1) == pytest.approx(0.5)


def test_specmail_shape_puts_15_percent_in_the_peak_hour(write_scenario) -> None:
    s = load(write_scenario('[scenario]\nname = "x"\n[workload.diurnal]\noutbound = "specmail"\n'))
    assert s.workload.diurnal.outbound.peak_factor / 24 == pytest.approx(0.15)


BAD = [
    # (file text after [scenario], key in the message, words in the message)
    ("[population]\nmailboxs = 5\n", "population.mailboxs", "did you mean 'mailboxes'"),
    (
        "[workload]\ninbound_per_mailbox_day = -1\n",
        "workload.inbound_per_mailbox_day",
        "must be ≥ 0, got -1",
    ),
    (
        "[workload.diurnal]\ninbound = [" + ", ".join(["1"] * 23) + "]\n",
        "workload.diurnal.inbound",
        "expected 24 hourly weights, got 23",
    ),
    (
        '[workload.diurnal]\ninbound = "ofice"\n',
        "workload.diurnal.inbound",
        "unknown shape 'ofice'",
    ),
    ("[gateways.gateway1.hosts]\n", "gateways.gateway1.hosts", "expected a host count"),
    (
        "[gateways.gateway1]\nhosts = [{ cores = 0 }]\n",
        "gateways.gateway1.hosts[0].cores",
        "must be ≥ 1, got 0",
    ),
    (
        '[gateways.gateway1]\nhosts = [{ cores = "four" }]\n',
        "gateways.gateway1.hosts[0].cores",
        "expected a whole number, got 'four'",
    ),
    (
        "[gateways.gateway0.stages.antivirus]\ncpu_s = 0.01\n",
        "gateways.gateway0.stages.antivirus",
        "role inbound_auth does not run antivirus",
    ),
    (
        "[gateways.gateway0.stages.spff]\ncpu_s = 0.01\n",
        "gateways.gateway0.stages.spff",
        "did you mean 'spf'",
    ),
    (
        '[gateways.gateway1]\nnext_hop = "mailbx"\n',
        "gateways.gateway1.next_hop",
        "no tier 'mailbx' (did you mean 'mailbox'?)",
    ),
    (
        '[gateways.gateway1]\nrole = "antivirus"\n',
        "gateways.gateway1.role",
        "expected one of inbound_auth",
    ),
    (
        '[gateways.gateway0.stages.spf]\ncpu_s = { dist = "lognormal", median = 1 }\n',
        "gateways.gateway0.stages.spf.cpu_s.sigma",
        "missing parameter for lognormal",
    ),
    (
        '[gateways.gateway0.stages.spf]\ncpu_s = { dist = "gamma", mean = 1 }\n',
        "gateways.gateway0.stages.spf.cpu_s.dist",
        "unknown distribution 'gamma'",
    ),
    (
        '[[failures.host_down]]\nhost = "gateway9.0"\nstart_h = 1.0\n',
        "failures.host_down[0].host",
        "no host 'gateway9.0'",
    ),
    (
        '[[failures.remote_outage]]\ndomain = "nowhere.example"\nstart_h = 1.0\nduration_h = 1.0\n',
        "failures.remote_outage[0].domain",
        "no remote domain 'nowhere.example'",
    ),
    (
        '[[workload.surges]]\nflow = "inbound"\nstart_h = 1.0\nfactor = 5.0\n',
        "workload.surges[0].duration_h",
        "missing required key",
    ),
    ("[workload]\nspam_share = 1.5\n", "workload.spam_share", "must be ≤ 1, got 1.5"),
    ('[gateways.gateway2]\nnext_hop = "gateway2"\n', "gateways", "outbound path"),
    (
        '[[deployment.machines]]\nname = "m"\ncores = 2\nhosts = ["nothing*"]\n',
        "deployment.machines[0].hosts",
        "place no host here",
    ),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD, ids=[b[1] for b in BAD])
def test_user_errors_name_file_key_and_problem(write_scenario, text, key, words) -> None:
    path = write_scenario('[scenario]\nname = "bad"\n' + text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    e = info.value
    assert e.file == str(path) and e.key == key
    assert words in e.message
    assert str(e).startswith(f"{path}: {key}: ")
    assert "\n" not in str(e)


def test_missing_scenario_table_is_named(write_scenario) -> None:
    with pytest.raises(ScenarioError, match=r": scenario: missing required key"):
        load(write_scenario("[population]\nmailboxes = 1\n"))


def test_toml_syntax_error_names_the_file(write_scenario) -> None:
    path = write_scenario('[scenario\nname = "x"\n')
    with pytest.raises(ScenarioError, match=re.escape(f"{path}: not valid TOML")):
        load(path)


def test_error_in_an_extended_file_names_that_file(write_scenario) -> None:
    write_scenario('[scenario]\nname = "p"\n[pop]\nactive_share = 2.0\n', "parent.toml")
    child = write_scenario('extends = "parent.toml"\n[scenario]\nname = "c"\n', "child.toml")
    with pytest.raises(ScenarioError) as info:
        load(child)
    assert info.value.file.endswith("parent.toml") and info.value.key == "pop.active_share"


def test_extends_cycle_and_missing_parent(write_scenario) -> None:
    write_scenario('extends = "b.toml"\n[scenario]\nname = "a"\n', "a.toml")
    b = write_scenario('extends = "a.toml"\n[scenario]\nname = "b"\n', "b.toml")
    with pytest.raises(ScenarioError, match="cycle"):
        load(b)
    orphan = write_scenario('extends = "gone.toml"\n[scenario]\nname = "o"\n', "o.toml")
    with pytest.raises(ScenarioError, match=r"extends: no such file 'gone.toml'"):
        load(orphan)


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load("does/not/exist.toml")
