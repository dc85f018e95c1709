"""TLS on every hop of the testbed: the local CA's identities and each service's settings.

Who speaks TLS how (docs/realnet.md, "TLS"):

- Gateway0, our MX: STARTTLS offered, not required (an Internet client may or
  may not use it, like any MX);
- every tier that takes mail only from our own tiers (Gateway1–4, the mailbox
  server's SMTP): STARTTLS required, ``530 5.7.0`` before it;
- submission: STARTTLS offered, AUTH only after it (``538 5.7.11`` before);
- every relay's client: STARTTLS required and the certificate verified against
  the local CA towards our own hosts, opportunistic and unverified towards a
  remote MX; the remote sinks offer STARTTLS like most MXs on the Internet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailgate.realnet.addresses import AddressPlan, host_name, remote_mx_name
from mailgate.realnet.relay.tls import ClientTls
from mailgate.realnet.services.tls import (
    HostIdentity,
    client_context,
    ensure_ca,
    server_context,
)
from mailgate.sim.scenario import Scenario


def remote_id(domain: str) -> str:
    """The certificate name of a remote domain's MX sink."""
    return f"remote-{domain}"


def identities(scenario: Scenario, plan: AddressPlan) -> list[HostIdentity]:
    """Every host that gets a certificate: our hosts and each remote MX sink."""
    ours = [HostIdentity(h, host_name(plan, h), plan.host_address(h)) for h in scenario.host_ids]
    remote = [
        HostIdentity(remote_id(d), remote_mx_name(d), plan.remote_mx_address(d))
        for d in plan.remote_domains
    ]
    return ours + remote


def make_ca(scenario: Scenario, plan: AddressPlan, state_dir: Path) -> Path:
    """The local CA and every host's key pair under ``state_dir/tls`` (kept if there)."""
    return ensure_ca(state_dir, identities(scenario, plan))


def relay_tls(
    scenario: Scenario, plan: AddressPlan, host_id: str, state_dir: Path, *, required: bool
) -> dict[str, Any]:
    """``RelayConfig`` fields for ``host_id``: its server context, whether STARTTLS is
    required of its clients, and its delivery side's ``ClientTls``. A host started on
    its own (not by ``Testbed.start``) makes the CA if the state dir has none."""
    make_ca(scenario, plan, state_dir)
    return {
        "tls_context": server_context(state_dir, host_id),
        "require_tls": required,
        "tls_client": ClientTls(
            verified=client_context(state_dir, host_id),
            opportunistic=client_context(None),
            ours=frozenset(plan.host_address(h) for h in scenario.host_ids),
        ),
    }
