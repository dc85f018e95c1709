"""The Postfix log parser: line formats, the queue-ID lifecycle, stitching across hosts by
Message-ID, hashing, aggregates, on hand-written lines."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mailgate.calibration.maillog.aggregate import aggregate, hour_exposure, read_logs
from mailgate.calibration.maillog.events import Collector
from mailgate.calibration.maillog.lines import HeaderParser, LineError
from mailgate.calibration.maillog.privacy import Hasher, anonymise_line

# one message through gw (MX) -> mbox (virtual delivery), maillog_file style, interleaved
# with a second message on gw that is deferred once and then sent to a remote MTA
DATA = Path(__file__).parent / "data" / "maillog"
CHAIN = (DATA / "two-hosts.log").read_text()


def collect(text: str, hasher: Hasher | None = None) -> Collector:
    c = Collector(hasher=hasher or Hasher(), year=2026)
    for line in text.splitlines():
        c.feed(line)
    return c


def test_header_formats() -> None:
    h = HeaderParser(2026)
    classic = h.parse("Dec  2 10:17:41 host postfix/smtpd[1]: connect from x[1.2.3.4]")
    maillog = h.parse("Dec 02 10:17:41 host postfix/smtpd[1]: connect from x[1.2.3.4]")
    iso = h.parse("2026-12-02T11:17:41.250000+01:00 host postfix/smtpd[1]: connect")
    assert classic.time == maillog.time == iso.time - 0.25
    assert iso.local - classic.local == 3600.25  # the diurnal hour is the host's own
    multi = h.parse("Dec 02 10:17:41 host postfix-out/smtp[1]: x")
    assert (multi.instance, multi.program) == ("host/postfix-out", "smtp")
    with pytest.raises(LineError, match="foreign_program"):
        h.parse("Dec 02 10:17:41 host sshd[1]: Accepted publickey")
    with pytest.raises(LineError, match="not_syslog"):
        h.parse("garbage")


def test_year_turns_over_in_a_year_less_log() -> None:
    h = HeaderParser(2026)
    dec = h.parse("Dec 31 23:59:59 h postfix/qmgr[1]: x")
    jan = h.parse("Jan  1 00:00:01 h postfix/qmgr[1]: x")
    assert jan.time - dec.time == 2


def test_lifecycle_and_stitching() -> None:
    c = collect(CHAIN, Hasher(enabled=False))
    assert c.counts["lines"] == len(CHAIN.splitlines())
    assert not [k for k in c.counts if k.startswith("skipped")]
    first = next(e for e in c.entries if e.queue_id == "1A2B3C4D5E")
    assert (first.source, first.message_id, first.size, first.nrcpt) == (
        "smtpd", "m1@example.org", 2048, 1)  # fmt: skip
    d = first.deliveries[0]
    assert (d.agent, d.delays, d.queued_as, d.status) == (
        "smtp", (0.1, 0.1, 0.1, 0.2), "0011223344", "sent")  # fmt: skip
    result = aggregate(c)
    st = result["stitching"]
    assert (st["messages"], st["end_to_end"], st["links_by_queue_id"]) == (2, 2, 1)
    inbound, outbound = result["end_to_end"]["inbound"], result["end_to_end"]["outbound"]
    # gw's a+b+c (0.3) + mbox's whole delay (0.3)
    assert inbound["n"] == 1 and inbound["p50"] == pytest.approx(0.6)
    assert outbound["p50"] == pytest.approx(301)
    gw = result["tiers"]["gw"]
    assert gw["deferral_rate"] == pytest.approx(1 / 3)
    assert gw["deferred_messages"] == 0.5
    assert gw["remote_mta_s"]["p50"] == pytest.approx(0.5)
    assert result["tiers"]["mbox"]["agents"] == {"virtual": 1}


def test_addresses_are_hashed_by_default_and_nothing_leaks_into_aggregates() -> None:
    import json

    c = collect(CHAIN)
    text = json.dumps(aggregate(c))
    for secret in ("alice", "carol", "m1@example.org", "1A2B3C4D5E"):
        assert secret not in text
    entry = c.entries[0]
    assert entry.sender.endswith("@example.org") and "alice" not in entry.sender
    # equal Message-IDs still stitch after hashing
    assert aggregate(c)["stitching"]["end_to_end"] == 2


def test_anonymised_line_keeps_the_parse() -> None:
    line = CHAIN.splitlines()[8]
    anon = anonymise_line(line, Hasher(salt=b"s"))
    assert "carol" not in anon and "@ours.example" in anon and "mbox[" not in anon
    assert "delays=0.1/0.1/0.1/0.2" in anon and "queued as 0011223344" in anon


def test_queue_id_reuse_starts_a_new_message() -> None:
    text = CHAIN + (
        "Dec 02 11:00:00 gw postfix/smtpd[10]: 1A2B3C4D5E: client=unknown[192.0.2.9]\n"
        "Dec 02 11:00:00 gw postfix/cleanup[12]: 1A2B3C4D5E: message-id=<m3@example.org>\n"
    )
    c = collect(text)
    assert sum(e.queue_id == "1A2B3C4D5E" for e in c.entries) == 2


def test_bad_and_foreign_lines_are_counted(tmp_path: Path) -> None:
    bad = [
        "",
        "not a log line at all",
        "Dec 02 10:00:00 gw sshd[1]: Accepted password for root",
        "Dec 02 10:00:00 gw postfix/unheard-of[1]: 1A2B3C4D5E: something",
        "Dec 02 10:00:00 gw postfix/smtp[1]: 1A2B3C4D5E: to=<x@y>, relay=r, delay=x, "
        "delays=1/2/3/4, dsn=2.0.0, status=sent (ok)",
        "Dec 02 10:00:00 gw postfix/smtp[1]: 1A2B3C4D5E: to=<x@y>, relay=r, delay=1, "
        "delays=1/2, dsn=2.0.0, status=sent (ok)",
        "Dec 45 10:00:00 gw postfix/smtp[1]: x",
        "Foo 02 10:00:00 gw postfix/smtp[1]: x",
    ]
    path = tmp_path / "mixed.log.gz"
    with gzip.open(path, "wt") as f:
        f.write(CHAIN + "\n".join(bad) + "\n")
    c = read_logs([path], year=2026)
    skipped = {k: n for k, n in c.counts.items() if k.startswith("skipped:")}
    assert sum(skipped.values()) == len(bad)
    assert skipped["skipped:foreign_program"] == 1
    assert skipped["skipped:unknown_program"] == 1
    assert aggregate(c)["stitching"]["end_to_end"] == 2


def test_hour_exposure_splits_the_period_by_hour_of_day() -> None:
    x = hour_exposure(23.5 * 3600, 25 * 3600)  # 23:30 to 01:00 the next day
    assert x[23] == 1800 and x[0] == 3600 and sum(x) == 5400
    week = hour_exposure(0.5 * 3600, (7 * 24 + 0.5) * 3600)
    assert week == [7 * 3600.0] * 24


def test_independent_hops_shows_what_correlation_between_hops_does() -> None:
    from mailgate.calibration.maillog.aggregate import independent_hops
    from mailgate.calibration.maillog.stitch import Path as MailPath

    # every hop slow together for three messages in ten: correlated hops
    parts = [(1.0, 1.0, 1.0) if i % 10 < 3 else (0.01, 0.01, 0.01) for i in range(200)]
    paths = [MailPath([], None, "inbound", sum(p), 0.0, p) for p in parts]  # type: ignore[arg-type]
    shuffled = independent_hops(paths)
    # measured: p50 0.03 s, p95 3 s; shuffled, most messages draw a slow hop somewhere
    # and three slow hops together become rare
    assert shuffled["p50"] > 1.0
    assert shuffled["p95"] < 2.1


def test_a_day_of_arrivals_gives_the_diurnal_weights() -> None:
    """One message an hour from 00 to 11 h, three from 12 to 23 h: weights 0.5 and 1.5."""
    lines = []
    n = 0
    for hour in range(24):
        for k in range(1 if hour < 12 else 3):
            n += 1
            qid = f"{n:010X}"
            stamp = f"Dec 02 {hour:02d}:{10 + 15 * k:02d}:00 gw"
            lines += [
                f"{stamp} postfix/smtpd[1]: {qid}: client=unknown[192.0.2.1]",
                f"{stamp} postfix/cleanup[2]: {qid}: message-id=<{n}@example.org>",
                f"{stamp} postfix/local[3]: {qid}: to=<u@ours.example>, relay=local, "
                "delay=0.1, delays=0.05/0.01/0/0.04, dsn=2.0.0, status=sent (delivered)",
            ]
    # a message that arrived before the log began is no arrival
    lines.append("Dec 02 23:59:59 gw postfix/qmgr[4]: 00000000FF: removed")
    d = aggregate(collect("\n".join(lines)))["tiers"]["gw"]["diurnal"]
    assert d["arrivals"] == [1] * 12 + [3] * 12
    assert d["hours_covered"] == 24
    # the first and last hours are partly outside the tier's first-to-last arrival
    assert d["weights"][1:11] == [pytest.approx(0.5, rel=0.05)] * 10
    assert d["weights"][12:23] == [pytest.approx(1.5, rel=0.05)] * 11


def test_one_file_per_host_stitches_like_one_merged_file(tmp_path: Path) -> None:
    for host in ("gw", "mbox"):
        mine = [line for line in CHAIN.splitlines() if f" {host} postfix/" in line]
        (tmp_path / f"{host}.log").write_text("\n".join(mine) + "\n")
    c = read_logs([tmp_path / "mbox.log", tmp_path / "gw.log"], year=2026)
    st = aggregate(c)["stitching"]
    assert (st["messages"], st["end_to_end"], st["paths"]) == (2, 2, 2)


def test_tier_mapping_names_scenario_tiers_in_the_overlay() -> None:
    from mailgate.calibration.maillog.aggregate import fit_samples
    from mailgate.calibration.maillog.overlay import overlay_table
    from mailgate.sim.scenario.loading import load
    from tests.conftest import TESTBED

    tiers = {"gw": "gateway0", "mbox": "mailbox"}
    c = collect(CHAIN)
    table = overlay_table(aggregate(c, tiers), fit_samples(c, tiers), load(TESTBED))
    gw = table["gateways"]["gateway0"]
    assert gw["hosts"] == 1
    assert gw["stages"]["smtp_receive"]["wait_s"]["median"] == pytest.approx(0.1)
    assert gw["stages"]["spf"] == {"cpu_s": 0.0, "cpu_per_kb_s": 0.0, "dns_lookups": 0,
                                   "wait_s": 0.0}  # fmt: skip
    # the mailbox's final delivery: b+c+d = 0.05 + 0 + 0.05
    mailbox_wait = table["mailbox_server"]["stages"]["maildir"]["wait_s"]
    assert mailbox_wait["median"] == pytest.approx(0.1)
    assert "gateway1" not in table.get("gateways", {})  # not in the log: the base's costs


def test_a_message_id_sent_twice_is_two_messages() -> None:
    st = aggregate(collect(CHAIN + CHAIN))["stitching"]  # queue IDs reused after "removed"
    assert (st["messages"], st["end_to_end"], st["paths"]) == (4, 4, 4)
