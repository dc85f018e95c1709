"""The shipped sample logs (a real three-instance Postfix chain at 4 and 16 msg/s, made by
benchmarks/postfix_chain.py): parsed, stitched, aggregated, fitted and compared with the
model, through the ``mailgate import-maillog`` command."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from mailgate.calibration.maillog.aggregate import aggregate, fit_samples, read_logs
from mailgate.cli import main

DATA = Path(__file__).parent / "data" / "maillog"
LOGS = {4: DATA / "chain-4.log.gz", 16: DATA / "chain-16.log.gz"}


@pytest.mark.parametrize("rate", sorted(LOGS))
def test_sample_log_is_read_and_stitched_end_to_end(rate: int) -> None:
    c = read_logs([LOGS[rate]], year=2026)
    result = aggregate(c)
    assert result["skipped"] == 0
    assert list(result["tiers"]) == ["gateway0", "gateway1", "mailbox"]  # in path order
    st = result["stitching"]
    assert st["messages"] == 150 and st["end_to_end"] == 150 and st["incomplete"] == 0
    assert st["hops_per_path"] == {"3": result["end_to_end"]["inbound"]["n"]}
    gw = result["tiers"]["gateway0"]
    assert gw["rate_per_s"] == pytest.approx(rate, rel=0.3)
    assert 2 < gw["size_kb"]["p50"] < 10  # the generator's median is 4 KB plus headers
    # unknown recipients bounce at gateway1 (the mailbox refuses them)
    assert result["tiers"]["gateway1"]["bounce_rate"] > 0
    e2e = result["end_to_end"]["inbound"]
    assert result["tiers"]["mailbox"]["agents"] == {"virtual": e2e["n"]}
    assert 0.005 < e2e["p50"] < e2e["p95"] < 0.5


def test_fit_samples_cover_every_tier() -> None:
    s = fit_samples(read_logs([LOGS[4]], year=2026))
    assert set(s) == {"gateway0", "gateway1", "mailbox"}
    assert set(s["gateway0"]) == {"a", "b+c"} and set(s["mailbox"]) == {"a", "b+c+d"}


def test_command_prints_and_writes_only_aggregates(tmp_path: Path, capsys) -> None:
    assert main(["import-maillog", str(LOGS[16]), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "stitched end to end 150" in text and "gateway1" in text
    written = (tmp_path / "aggregates.json").read_text()
    data = json.loads(written)
    assert data["hashed"] is True and data["stitching"]["end_to_end"] == 150
    # no address, Message-ID, hash or queue ID in what is written
    assert "@" not in written
    log = gzip.decompress(LOGS[16].read_bytes()).decode()
    secrets = set(re.findall(r": ([0-9A-F]{10,}): ", log)) | set(re.findall(r"<([^@>]+)@", log))
    assert len(secrets) > 300
    assert not [s for s in secrets if s in written]


def test_command_fits_and_compares_with_the_model(tmp_path: Path, capsys) -> None:
    args = ["import-maillog", *map(str, LOGS.values()), "--scenario", "loopback-testbed"]
    code = main([*args, "--each-log-a-load", "--out", str(tmp_path), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == (0 if result["comparison"]["within_tolerance"] else 3)
    rows = result["comparison"]["rows"]
    assert {r["log"] for r in rows} == {p.name for p in LOGS.values()}
    assert all(r["modelled"]["n"] > 1000 for r in rows)
    from mailgate.sim.scenario.loading import load

    fitted = load(tmp_path / "fitted.toml")
    assert fitted.gateways["gateway0"].stages["spf"].wait_s.mean == 0
    assert len(fitted.gateways["gateway0"].hosts) == 1
    assert (tmp_path / "report.md").read_text().startswith("Measured (log) vs modelled")


@pytest.mark.parametrize("rate", sorted(LOGS))
def test_model_fitted_on_a_log_matches_it_within_15_percent(rate: int, tmp_path: Path) -> None:
    """The issue's tolerance, each rate fitted from its own log (one overlay for both
    rates misses at 16 msg/s: Postfix gets faster as load rises, the model cannot)."""
    from mailgate.calibration.maillog.compare import compare_with_model

    c = read_logs([LOGS[rate]], year=2026)
    comparison = compare_with_model(aggregate(c), fit_samples(c), "loopback-testbed", tmp_path)
    (row,) = comparison["rows"]
    assert row["judged"] and row["ok"], row


def test_bad_input_is_a_one_line_user_error(tmp_path: Path, capsys) -> None:
    assert main(["import-maillog", str(tmp_path / "missing.log")]) == 2
    assert "no such log file" in capsys.readouterr().err
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    assert main(["import-maillog", str(empty), "--out", str(tmp_path)]) == 2
    assert "no Postfix message lines" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["import-maillog", str(empty), "--tier", "nonsense"])
    assert e.value.code == 2
