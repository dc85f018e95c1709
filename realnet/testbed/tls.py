"""TLS on every hop of the testbed: the local CA's identities and each service's settings.

Who speaks TLS how (docs/realnet.md, "TLS"):

- Gateway0, our MX: STARTTLS offered, not required (an Internet client may or
  may not use it, like any MX);
- every tier that takes mail only from our own tiers (Gateway1–4, the mailbox
  server's SMTP): STARTTLS required, ``530 5.7.0`` before it, and mutual: the
  client must present a certificate of the local CA naming a host of the tier's
  upstream (``554 5.7.0``/``554 5.7.1`` after STARTTLS otherwise);
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
    scenario: Scenario,
    plan: AddressPlan,
    host_id: str,
    state_dir: Path,
    *,
    required: bool,
    clients: list[str] | None = None,
) -> dict[str, Any]:
    """``RelayConfig`` fields for ``host_id``: its server context, whether STARTTLS is
    required of its clients, and its delivery side's ``ClientTls``. A host started on
    its own (not by ``Testbed.start``) makes the CA if the state dir has none.

    ``clients``: host ids whose certificate may send here (mutual TLS: the handshake
    asks for the client's certificate); None = none asked for."""
    make_ca(scenario, plan, state_dir)
    return {
        **client_certs(scenario, plan, host_id, state_dir, clients),
        "require_tls": required,
        "tls_client": ClientTls(
            verified=client_context(state_dir, host_id),
            opportunistic=client_context(None),
            ours=frozenset(plan.host_address(h) for h in scenario.host_ids),
        ),
    }


def client_certs(
    scenario: Scenario, plan: AddressPlan, host_id: str, state_dir: Path, clients: list[str] | None
) -> dict[str, Any]:
    """``RelayConfig`` fields of a server that asks for the certificates of ``clients``
    (host ids; their DNS names are what a certificate must name), or of one that asks
    for none (``clients`` None: our MX, submission)."""
    if clients is None:
        return {"tls_context": server_context(state_dir, host_id)}
    return {
        "tls_context": server_context(state_dir, host_id, ask_client_cert=True),
        "client_cert_names": frozenset(host_name(plan, h).lower() for h in clients),
    }
