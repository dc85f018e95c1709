"""A stock Debian Postfix in a private config directory, for interop tests and the benchmark.

``StockPostfix(workdir, listen="127.x.y.z:PORT", main={...})`` writes
``main.cf``/``master.cf`` under ``workdir`` (queue, data and log there too,
no chroot), starts it with ``postfix -c DIR start`` and stops it with
``postfix -c DIR stop``, then makes sure the master process (by the PID in
its pid file) is gone. Needs root (Postfix drops to the ``postfix`` user).

Practical points (PRACTICAL.md plus what this machine showed): Postfix
refuses an ``inet_interfaces`` address that is not configured on an
interface, so it keeps ``127.0.0.1`` there and the SMTP service in
``master.cf`` binds the wanted ``address:port`` itself; with no syslog,
``maillog_file`` must sit under ``maillog_file_prefixes``; ``data_directory``
must belong to ``postfix``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

MASTER_CF_DIST = Path("/usr/share/postfix/master.cf.dist")


def available() -> bool:
    """Postfix is installed and we may start it (root)."""
    return shutil.which("postfix") is not None and os.geteuid() == 0


class StockPostfix:
    """One private Postfix instance."""

    def __init__(
        self, listen: str, main: Mapping[str, str] | None = None, workdir: Path | None = None
    ) -> None:
        # the postfix user must reach its data dir: pytest's tmp dirs are 0700, so by
        # default take a fresh world-traversable folder in /tmp and remove it on stop
        self._own = workdir is None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="mailgate-postfix-"))
            workdir.chmod(0o755)
        self.dir = Path(workdir)
        self.cfg = self.dir / "cfg"
        self.queue = self.dir / "queue"
        self.data = self.dir / "data"
        self.log = self.dir / "postfix.log"
        self.listen = listen
        self.main = dict(main or {})
        self.master_pid: int | None = None

    def write_config(self) -> None:
        for d in (self.cfg, self.queue, self.data):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data, "postfix")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "mydestination": "",
            "myhostname": "stock-postfix.invalid",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.dir),
            "smtpd_relay_restrictions": "permit_mynetworks, permit_auth_destination, reject",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
        }
        settings.update(self.main)
        (self.cfg / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        master = MASTER_CF_DIST.read_text() if MASTER_CF_DIST.exists() else ""
        if not master:
            master = Path("/etc/postfix/master.cf").read_text()
        lines = []
        for line in master.splitlines():
            if re.match(r"^smtp\s+inet\s", line):
                line = re.sub(r"^smtp\s+inet", f"{self.listen} inet", line)
            # no chroot: the private queue is not a chroot jail
            m = re.match(r"^(\S+\s+(?:unix|inet|fifo|unix-dgram|pass)\s+\S+\s+\S+\s+)(\S+)", line)
            if m and not line.startswith("#"):
                line = m.group(1) + "n" + line[m.end() :]
            lines.append(line)
        (self.cfg / "master.cf").write_text("\n".join(lines) + "\n")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.cfg), *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def start(self, timeout_s: float = 20.0) -> None:
        self.write_config()
        run = self._postfix("start")
        if run.returncode != 0:
            raise RuntimeError(f"postfix start failed: {run.stderr} {self.log_tail()}")
        host, port = self.listen.rsplit(":", 1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"postfix did not listen on {self.listen}: {self.log_tail()}")
        with contextlib.suppress(OSError, ValueError):
            self.master_pid = int((self.queue / "pid" / "master.pid").read_text().strip())

    def queue_size(self) -> int:
        """Messages still queued (incoming, active, deferred, maildrop)."""
        return sum(
            1
            for d in ("incoming", "active", "deferred", "maildrop", "hold")
            for p in (self.queue / d).rglob("*")
            if p.is_file()
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._postfix("stop")
        pid = self.master_pid
        if pid is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.master_pid = None

    def cleanup(self) -> None:
        """Remove the work folder if we made it (after stop)."""
        if self._own:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 10) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> StockPostfix:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of nobody we wait for still "exists"; check its state
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True
