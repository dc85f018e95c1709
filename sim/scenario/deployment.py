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
    # How an operating system's scheduler shares the cores (docs/model.md, "CPU and
    # deployment"). Quiet keys: at their defaults the machine is the one FCFS queue it
    # always was and results.json does not echo them.
    scheduler: str = spec(
        "fcfs",
        doc="fcfs: one first-come-first-served queue for all cores; per-core: a run queue "
        "per core, a visit joining its host's last core (core_affinity) or the shortest; "
        "fair: the cores shared equally by the running processes (processor sharing, as "
        "Linux's CFS), each at most one core",
        choices=("fcfs", "per-core", "fair"),
        quiet=True,
    )
    visits_per_block: int = spec(
        1,
        doc="each CPU block of a host is split into this many equal visits, each queued "
        "for the host's process and a core on its own (SMTP round trips, thread hand-offs)",
        min=1,
        quiet=True,
    )
    core_affinity: float = spec(
        0.5,
        doc="per-core: probability that a visit queues on the core its host ran on last "
        "(else on the shortest run queue)",
        min=0,
        max=1,
        quiet=True,
    )
    wakeup_s: float = spec(
        0.0, doc="delay before each visit may queue for a core (wake-up latency), s", min=0,
        quiet=True,
    )  # fmt: skip
    background_cores: float = spec(
        0.0,
        doc="constant CPU load of processes outside the model, in cores (a CPU burner): "
        "bursts of background_burst_s (exponential) arriving as a Poisson stream",
        min=0,
        quiet=True,
    )
    background_processes: int = spec(
        0,
        doc="fair: processes outside the model that always want a core (a CPU burner); "
        "each gets its fair share, a whole core only while the machine is quiet",
        min=0,
        quiet=True,
    )
    background_burst_s: float = spec(
        0.005, doc="mean length of one background_cores burst, s", gt=0, quiet=True
    )
    background_cpu_per_message_s: float = spec(
        0.0,
        doc="CPU of processes outside the model for each message sent into the system "
        "(DNS server, remote sinks, load generator): one burst when it is sent, s",
        min=0,
        quiet=True,
    )

    @property
    def visits(self) -> bool:
        """Host CPU runs in visits (per-core queues, several visits, a wake-up latency;
        a fair machine has none: the checks refuse its visit keys)."""
        return self.scheduler == "per-core" or self.visits_per_block > 1 or self.wakeup_s > 0

    def processes_of(self, host_cores: int) -> int:
        """Processes a host placed here runs (``processes_per_host``, 0: its cores); more
        than the machine's cores would only queue for a core, except on a fair machine,
        where they share the cores."""
        procs = self.processes_per_host or host_cores
        return procs if self.scheduler == "fair" else min(procs, self.cores)


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
