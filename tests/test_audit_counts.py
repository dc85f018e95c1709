"""The audit counts acceptances per (message, host): a host that accepts one message twice
must end it twice (issue #16 point 9). Written as the hosts write their files, so the
audit reads exactly what a run leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

from mailgate.realnet.relay.tracing import journal_dir, record_dict, trace_dir
from mailgate.realnet.testbed.audit import audit
from mailgate.sim.scenario.records import HopRecord

MSG = "run1-internal-0001"


def _write(state: Path, hops: list[HopRecord], journal: list[tuple[str, str]]) -> None:
    trace_dir(state).mkdir(parents=True)
    journal_dir(state).mkdir(parents=True)
    for hop in hops:
        with (trace_dir(state) / f"{hop.host}.jsonl").open("a") as f:
            f.write(json.dumps(record_dict(hop)) + "\n")
    for msg, host in journal:
        with (journal_dir(state) / f"{host}.jsonl").open("a") as f:
            f.write(json.dumps({"trace_id": msg, "queue_id": "q", "flow": "internal"}) + "\n")


def _internal_path(filed: bool) -> tuple[list[HopRecord], list[tuple[str, str]]]:
    """Internal mail: submitted to mailbox.0, out through gateway2/3, back in through
    gateway0/1 and filed at mailbox.0 — or, with ``filed`` False, lost at the filing."""
    chain = [("mailbox.0", "gateway2.0"), ("gateway2.0", "gateway3.0"),
             ("gateway3.0", "gateway0.0"), ("gateway0.0", "gateway1.0"),
             ("gateway1.0", "mailbox.0")]  # fmt: skip
    hops = [
        HopRecord(MSG, "internal", host, 1.0, arrived=t, accepted=t, left=t + 0.5,
                  outcome="relayed", next_hop=nxt)
        for t, (host, nxt) in enumerate(chain)
    ]  # fmt: skip
    if filed:
        hops.append(HopRecord(MSG, "internal", "mailbox.0", 1.0, arrived=9, accepted=9,
                              left=9, outcome="mailbox"))  # fmt: skip
    journal = [(MSG, host) for host, _ in chain[:4]]  # the gateways and the submission spool
    return hops, journal


def test_internal_mail_filed_is_accounted_for(tmp_path: Path) -> None:
    _write(tmp_path, *_internal_path(filed=True))
    report = audit(tmp_path)
    assert report.ok, report.lines()
    assert report.accepted == 6  # five hosts, mailbox.0 twice
    assert report.ends["mailbox"] == 1 and report.ends["relayed"] == 5


def test_internal_mail_lost_at_the_filing_is_named(tmp_path: Path) -> None:
    """mailbox.0 answered gateway1's 250 and then never filed the message: its
    submission's ``relayed`` record must not hide that."""
    _write(tmp_path, *_internal_path(filed=False))
    report = audit(tmp_path)
    assert report.lost == [(MSG, "mailbox.0")], report.lines()
