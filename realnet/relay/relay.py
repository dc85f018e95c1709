"""The relay every realnet gateway is built from: one SMTP service on one address.

A ``Relay`` wires its parts together and runs the server's life (aiosmtpd's
controller): the receiving side (``receiver``: the SMTP dialogue, the
gateway's ``Policy`` before the answer — milter-style: reject with 550/451,
quarantine or add headers —, ``Received:``, the durable write to the
``Spool`` and only then 250) and the queue manager (``queue_manager``: the
delivery attempts to one of the next tier's twin hosts or the recipient
domain's MX, retries with backoff, the fallback tier, bounces after the
queue lifetime) meet only in the durable spool, as Postfix's smtpd and qmgr
do. The mailbox server's SMTP service files into Maildirs instead and has no
spool and no queue manager.

Every message leaves one ``HopRecord`` JSON line in ``traces/<host>.jsonl``;
the ``X-Mailgate-Trace`` header carries the trace id from hop to hop.

The other parts live next door: ``config`` (``RelayConfig``), ``policy``
(what checks see and decide), ``spool`` (durability), ``mx`` (MX lookups),
``smtpclient`` (the next-hop client), ``message`` (header facts),
``tracing`` (trace files) and ``dsn`` (bounces).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from mailgate.realnet.relay.config import STOP_GRACE_S, RelayConfig
from mailgate.realnet.relay.intake import Intake
from mailgate.realnet.relay.policy import Policy
from mailgate.realnet.relay.queue_manager import QueueManager
from mailgate.realnet.relay.receiver import Receiver
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.realnet.relay.tracing import Tracer


class Relay:
    """One SMTP service: receive, check, spool, deliver."""

    def __init__(self, config: RelayConfig, policy: Policy | None = None) -> None:
        self.config = config
        self.policy = policy or Policy()
        self.tracer = Tracer(config.state_dir, config.host_id)
        self.spool = None if config.local_delivery else Spool(config.spool_dir, fsync=config.fsync)
        self.queue = None if self.spool is None else QueueManager(config, self.spool, self.tracer)
        self.intake = Intake(config, self.policy, self.tracer, self.spool, self._queued)
        self.receiver = Receiver(config, self.policy, self.intake)
        self._server: asyncio.AbstractServer | None = None

    def _queued(self, entry: SpoolEntry) -> None:
        assert self.queue is not None  # only a relay with a spool queues
        self.queue.queued(entry)

    async def start(self) -> None:
        """Recover the spool, then listen."""
        loop = asyncio.get_running_loop()
        if self.queue is not None:
            self.queue.start()
        self._server = await loop.create_server(
            self.receiver.protocol,
            self.config.bind,
            self.config.port,
            reuse_address=True,
            reuse_port=self.config.reuse_port or None,
        )

    def flush(self) -> None:
        """Retry every deferred message now (``postqueue -f``; SIGUSR1 to the host)."""
        if self.queue is not None:
            self.queue.flush()

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """A graceful stop, like ``postfix stop``: stop listening and starting new
        transactions, let messages being received get their answer and deliveries in
        flight finish, all within ``grace_s``; then stop. Spooled messages stay for the
        next start. Without the wait an orderly stop cut deliveries the next hop had
        already taken, and they were sent again after the restart (issue #16)."""
        deadline = time.monotonic() + grace_s
        self.receiver.closing = True
        if self._server is not None:
            self._server.close()
        await self.receiver.drain(deadline)
        if self.queue is not None:
            await self.queue.stop(max(0.0, deadline - time.monotonic()))
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self.spool is not None:
            self.spool.close()
        self.intake.close()
        self.receiver.close()
        self.tracer.close()
