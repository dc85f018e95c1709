"""The parser on a fuzzed log (hypothesis): truncated lines, interleaved queue IDs,
unknown programs, random bytes. It never raises, counts every line, and the aggregates
still build."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailgate.calibration.maillog.aggregate import aggregate
from mailgate.calibration.maillog.events import Collector
from tests.test_maillog import CHAIN

LINES = CHAIN.splitlines()
PROGRAMS = ["smtpd", "cleanup", "qmgr", "smtp", "lmtp", "local", "virtual", "bounce",
            "frobnicate", "x"]  # fmt: skip
QUEUE_IDS = ["1A2B3C4D5E", "9F8E7D6C5B", "0011223344", "NOQUEUE", "ZZ", "4hZx8k1mNqz"]


def _mutate(line: str, qid: str, program: str, cut: int) -> str:
    line = line.replace("1A2B3C4D5E", qid).replace("/smtp[", f"/{program}[")
    return line[: max(0, len(line) - cut)]


log_line = st.one_of(
    st.builds(
        _mutate,
        st.sampled_from(LINES),
        st.sampled_from(QUEUE_IDS),
        st.sampled_from(PROGRAMS),
        st.integers(0, 120),
    ),
    st.text(max_size=200),
    st.builds(
        lambda s: "Dec 02 10:00:00 gw postfix/qmgr[1]: 1A2B3C4D5E: " + s, st.text(max_size=80)
    ),
    st.builds(
        lambda d: (
            f"Dec 02 10:00:0{d[0] % 10} gw postfix/smtp[1]: 9F8E7D6C5B: to=<a@b>, relay=r,"
            f" delay={d[1]}, delays={d[2]}, dsn=2.0.0, status=sent (queued as {d[3]})"
        ),
        st.tuples(
            st.integers(0, 9),
            st.text("0123456789.-einfa", max_size=6),
            st.text("0123456789./-na", max_size=12),
            st.sampled_from(QUEUE_IDS),
        ),
    ),
)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(log_line, max_size=60), st.randoms(use_true_random=False))
def test_fuzzed_log_never_crashes_and_every_line_is_counted(lines: list[str], rnd) -> None:
    rnd.shuffle(lines)  # interleave the queue IDs in any order
    c = Collector(year=2026)
    for line in lines:
        c.feed(line)
    counts = c.counts
    assert counts["lines"] == len(lines)
    kinds = sum(n for k, n in counts.items() if k != "lines")
    assert kinds == len(lines)  # each line is used, ignored or skipped (with a reason)
    result = aggregate(c)
    assert result["skipped"] == sum(n for k, n in counts.items() if k.startswith("skipped:"))
    st_ = result["stitching"]
    assert st_["end_to_end"] + st_["incomplete"] == st_["messages"]
