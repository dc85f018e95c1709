"""One Postfix log line -> a ``LogLine`` (time, host, program, text), or the reason it is
not one. Reads classic syslog lines (``Dec  2 10:17:41``, no year), RFC 3339 syslog lines
(``2026-12-02T10:17:41.123456+01:00``) and Postfix ≥ 3.4 ``maillog_file`` lines
(``Dec 02 10:17:41``), from plain or gzip files."""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}

_HEADER = re.compile(
    r"(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?P<frac>\.\d{1,9})?"
    r"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?)(?P<tz>Z|[+-]\d\d:?\d\d)?)"
    r" (?P<host>\S+) (?P<tag>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<text>.*)"
)


@dataclass(slots=True, frozen=True)
class LogLine:
    """The syslog part of a Postfix line.

    ``time`` is seconds since the epoch (a line without a zone is read as UTC: only
    differences matter); ``local`` is the wall-clock time as written, read as UTC (the
    diurnal profile is about the gateway's own clock). ``instance`` names the Postfix
    instance: the host, plus the syslog name when it is not plain ``postfix`` (``postmulti``
    instances on one host).
    """

    time: float
    local: float
    instance: str
    program: str
    text: str


class LineError(ValueError):
    """A line that is not a Postfix log line; ``reason`` is the count's key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HeaderParser:
    """Parses line headers; remembers the year of year-less lines across a file."""

    def __init__(self, year: int | None = None) -> None:
        self.year = year if year is not None else dt.datetime.now(dt.UTC).year
        self._last_month = 0

    def parse(self, line: str) -> LogLine:
        m = _HEADER.match(line)
        if m is None:
            raise LineError("not_syslog")
        tag = m["tag"]
        service, slash, program = tag.rpartition("/")
        if not slash:
            raise LineError("foreign_program")
        time, local = self._time(m)
        host = m["host"]
        instance = host if service == "postfix" else f"{host}/{service}"
        return LogLine(time, local, instance, program, m["text"])

    def _time(self, m: re.Match[str]) -> tuple[float, int]:
        if m["iso"]:
            try:
                when = dt.datetime.fromisoformat(m["iso"] + (m["tz"] or "+00:00"))
            except ValueError as e:
                raise LineError("bad_time") from e
            return when.timestamp(), when.replace(tzinfo=dt.UTC).timestamp()
        month = MONTHS.get(m["mon"], 0)
        if month == 0:
            raise LineError("not_syslog")
        # year-less lines: a month far before the last one means the year turned
        if self._last_month and month < self._last_month - 6:
            self.year += 1
        self._last_month = month
        hh, mm, ss = (int(x) for x in m["hms"].split(":"))
        day = int(m["day"])
        if hh > 23 or mm > 59 or ss > 60 or not 1 <= day <= 31:
            raise LineError("bad_time")
        base = calendar.timegm((self.year, month, day, hh, mm, min(ss, 59)))
        t = base + (float(m["frac"]) if m["frac"] else 0.0)
        return t, t


def open_lines(path: Path) -> Iterator[str]:
    """The lines of a plain or gzip log (by its first bytes, not its name), undecodable
    bytes replaced."""
    with path.open("rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:  # type: ignore[operator]
        for line in f:
            yield line.rstrip("\r\n")
