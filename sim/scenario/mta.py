"""The rules every relay follows, Postfix defaults unless a scenario says otherwise:
``[retry]`` (the deferred queue's schedule) and ``[limits]`` (protocol limits)."""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.sim.scenario.fields import spec


@dataclass(frozen=True)
class Retry:
    """[retry]: the fallback MX's schedule (Postfix defaults)."""

    queue_run_delay_s: float = spec(300.0, doc="queue scan interval", gt=0)
    minimal_backoff_s: float = spec(300.0, doc="first retry after", gt=0)
    maximal_backoff_s: float = spec(4000.0, doc="backoff doubles up to this", gt=0)
    max_queue_lifetime_s: float = spec(5 * 86400.0, doc="bounce after this", gt=0)


@dataclass(frozen=True)
class Limits:
    """[limits]: protocol limits (Postfix defaults)."""

    message_size_limit_bytes: int = spec(10_240_000, doc="larger messages get 552", min=1)
    hopcount_limit: int = spec(50, doc="more Received: headers is a loop", min=1)
    smtpd_recipient_limit: int = spec(
        1000, doc="recipients per transaction; more get 452 4.5.3", min=1
    )
    smtpd_client_connection_count_limit: int = spec(
        50, doc="connections one client address may hold; more get 421 (0: no limit)", min=0
    )
    smtpd_timeout_s: float = spec(
        300.0, doc="idle time allowed a client before 421 4.4.2 and close, s", gt=0
    )
