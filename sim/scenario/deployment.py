"""Where the hosts run: ``[deployment]`` (physical machines that hosts share, for the
model) and ``[realnet]`` (how the real relays are laid out on loopback)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from mailgate.sim.scenario.fields import required, spec


@dataclass(frozen=True)
class Machine:
    """[[deployment.machines]]: a physical machine some hosts share."""

    name: str = required(doc="label")
    cores: int = required(doc="CPU cores of the machine", min=1)
    hosts: tuple[str, ...] = spec(("*",), doc="host ids or glob patterns placed here")
    processes_per_host: int = spec(
        0, doc="worker processes each host runs (0 = as many as its cores)", min=0
    )


@dataclass(frozen=True)
class Deployment:
    """[deployment]: where hosts run. A host on no listed machine has its own."""

    machines: tuple[Machine, ...] = spec(())

    def machine_of(self, host_id: str) -> Machine | None:
        for machine in self.machines:
            if any(fnmatch.fnmatchcase(host_id, pattern) for pattern in machine.hosts):
                return machine
        return None


@dataclass(frozen=True)
class User:
    """[[realnet.users]]: a mailbox user who may authenticate."""

    name: str = required(doc="local part")
    password_hash: str = required(doc="hashlib.scrypt hash, 'scrypt$n$r$p$salt$hex'")


@dataclass(frozen=True)
class Realnet:
    """[realnet]: how the real relays are laid out on loopback."""

    address_prefix: str = spec("127.25", doc="tier N host k binds PREFIX.N.(k+1)")
    smtp_port: int = spec(2525, doc="SMTP port on every host address", min=1, max=65535)
    submission_port: int = spec(2587, doc="submission port on the mailbox server", min=1, max=65535)
    pop3_port: int = spec(2110, doc="POP3 port on the mailbox server", min=1, max=65535)
    dns_address: str = spec("127.25.255.53", doc="address of the realnet DNS server")
    dns_port: int = spec(5353, doc="port of the realnet DNS server", min=1, max=65535)
    dns_delay_s: float = spec(0.0, doc="added to every DNS answer, s", min=0)
    dkim_selector: str = spec("mg2026", doc="DKIM selector")
    dkim_algorithm: str = spec(
        "rsa-sha256", doc="DKIM signing algorithm", choices=("rsa-sha256", "ed25519-sha256")
    )
    antivirus: str = spec(
        "embedded", doc="embedded signature scanner or clamd", choices=("embedded", "clamd")
    )
    clamd_address: str = spec("127.0.0.1:3310", doc="host:port of clamd")
    time_scale: float = spec(1.0, doc="retry timers are multiplied by this (tests: 0.01)", gt=0)
    state_dir: str = spec("", doc="spools and maildirs; empty = a fresh temporary folder")
    users: tuple[User, ...] = spec((), doc="users allowed to submit")
