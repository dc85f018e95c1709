"""The shipped scenarios by name: the listing has every file in ``scenarios/`` with a
description, ``load`` and ``extends`` accept a shipped name from any folder, a file
of that name wins, and an unknown name is named with the closest shipped ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailgate.sim.scenario import ScenarioError, load, shipped_scenarios
from mailgate.sim.scenario.loading import extended_file
from mailgate.sim.scenario.shipped import closest_names, describe, shipped_path
from tests.conftest import ROOT

SHIPPED = ROOT / "scenarios"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder outside the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_listing_has_every_shipped_file_with_a_one_line_description() -> None:
    listed = shipped_scenarios()
    assert [s.name for s in listed] == sorted(p.stem for p in SHIPPED.glob("*.toml"))
    for s in listed:
        assert s.path.samefile(SHIPPED / f"{s.name}.toml")
        assert s.description.strip() and "\n" not in s.description
    by_name = {s.name: s.description for s in listed}
    assert by_name["spam-wave"] == "Inbound spam x5 for one hour during the peak hour."


def test_description_falls_back_to_the_leading_comment(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('# A first line\n# and its second.\n#\n# Not this.\n[scenario]\nname = "x"\n')
    assert describe(path) == "A first line and its second."


@pytest.mark.parametrize("name", ["drive-network", "drive-network.toml"])
def test_load_a_shipped_scenario_by_name(elsewhere: Path, name: str) -> None:
    s = load(name)
    assert s.scenario.name == "drive-network"
    assert Path(s.source).samefile(SHIPPED / "drive-network.toml")
    assert s == dataclasses.replace(load(SHIPPED / "drive-network.toml"), source=s.source)


def test_a_shipped_name_extends_its_shipped_parents(elsewhere: Path) -> None:
    """gateway1-mta-crash extends gateway1-host-down, which extends peak-hour."""
    by_name, by_path = load("gateway1-mta-crash"), load(SHIPPED / "gateway1-mta-crash.toml")
    assert by_name == dataclasses.replace(by_path, source=by_name.source)
    assert by_name.scenario.start_hour == 7.75  # peak-hour.toml: 15 min before 08:00


def test_an_existing_file_wins_over_a_shipped_name(elsewhere: Path) -> None:
    (elsewhere / "peak-hour.toml").write_text('[scenario]\nname = "mine"\n')
    assert load("peak-hour.toml").scenario.name == "mine"
    assert load("peak-hour").scenario.name == "peak-hour"  # no file called peak-hour


@pytest.mark.parametrize("parent", ["drive-network", "drive-network.toml"])
def test_extends_a_shipped_name_from_a_users_folder(tmp_path: Path, parent: str) -> None:
    child = tmp_path / "mine.toml"
    child.write_text(
        f'extends = "{parent}"\n[scenario]\nname = "mine"\n[population]\nmailboxes = 7\n'
    )
    s = load(child)
    base = load(SHIPPED / "drive-network.toml")
    assert s.scenario.name == "mine" and s.population.mailboxes == 7
    assert s.scenario.seed == base.scenario.seed and s.workload == base.workload


def test_extends_prefers_a_file_next_to_the_users_file(tmp_path: Path) -> None:
    (tmp_path / "peak-hour.toml").write_text('[scenario]\nname = "local"\nseed = 4242\n')
    child = tmp_path / "mine.toml"
    child.write_text('extends = "peak-hour.toml"\n[scenario]\nname = "mine"\n')
    assert load(child).scenario.seed == 4242


def test_an_unknown_name_is_named_with_the_closest_shipped_names(elsewhere: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load("drive-netwrk")
    text = str(info.value)
    assert text.startswith("drive-netwrk: no such file")
    assert "no shipped scenario of that name" in text and "drive-network" in text
    assert "\n" not in text


def test_an_unknown_name_with_nothing_close_lists_the_shipped_ones(elsewhere: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load("zzzz")
    assert all(s.name in str(info.value) for s in shipped_scenarios())


def test_extends_of_an_unknown_name_suggests_shipped_names(tmp_path: Path) -> None:
    child = tmp_path / "mine.toml"
    child.write_text('extends = "peak-hours"\n[scenario]\nname = "mine"\n')
    with pytest.raises(ScenarioError, match=r"extends: no such file 'peak-hours'") as info:
        load(child)
    assert "peak-hour" in info.value.message


def test_a_path_with_folders_is_never_a_shipped_name(elsewhere: Path) -> None:
    assert shipped_path("scenarios/drive-network.toml") is None
    assert closest_names("drive-netwrk") == ["drive-network"]
    with pytest.raises(ScenarioError) as info:
        load("nowhere/drive-network.toml")
    assert info.value.message == "no such file"


def test_extended_file_names_the_parent_file(tmp_path: Path) -> None:
    """What calibration's production_base needs: the parent file of an ``extends``."""
    mine = tmp_path / "mine.toml"
    assert extended_file(mine, "peak-hour").samefile(SHIPPED / "peak-hour.toml")
    (tmp_path / "peak-hour.toml").write_text("")
    assert extended_file(mine, "peak-hour.toml") == tmp_path / "peak-hour.toml"
