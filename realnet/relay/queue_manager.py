"""The queue manager of a relay (Postfix's qmgr and smtp): from the spool to the next hop.

Every message the receiving side spooled (and every one found in the spool on
start) gets a delivery attempt: to one of the next tier's twin hosts (in the
tier's ``balance`` order; a twin that refuses or fails is skipped for the
next), or to the recipient domain's MX hosts. What an attempt could not
deliver is offered to the fallback tier (Postfix ``smtp_fallback_relay``),
then retried with doubling backoff, and bounced after the queue lifetime;
permanent refusals are bounced at once (``dsn.Bouncer``). A bounce made here
goes by the MX of its recipient's domain, or the tier's way for our own
domains, never blindly to the next tier (``routing.Router``). As Postfix's qmgr, at
most ``destination_concurrency`` attempts run at once per destination (the next tier,
or the first recipient's domain) and ``delivery_limit`` in all. The message's ``HopRecord``
travels in its spool file and is traced when the message leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mailgate.realnet.relay.config import RelayConfig
from mailgate.realnet.relay.dsn import Bouncer
from mailgate.realnet.relay.message import domain_of
from mailgate.realnet.relay.routing import Router
from mailgate.realnet.relay.smtpclient import ConnectError, ConnectionPool, SmtpError
from mailgate.realnet.relay.spool import Spool, SpoolEntry
from mailgate.realnet.relay.tracing import Tracer, record_dict
from mailgate.sim.scenario.records import HopRecord, StageSpan

log = logging.getLogger(__name__)

#: (delivered, permanently failed, still pending, the host that took it)
Outcome = tuple[list[str], dict[str, SmtpError], list[str], str]


class QueueManager:
    """Schedules and runs the delivery attempts of one relay's spooled messages."""

    def __init__(self, config: RelayConfig, spool: Spool, tracer: Tracer) -> None:
        self.config = config
        self.spool = spool
        self.tracer = tracer
        # as many idle connections per next hop as deliveries may run at once, so that a
        # burst does not close connections only to open them again
        self.pool = ConnectionPool(
            helo=config.hostname,
            source=config.bind,
            timeout=config.connect_timeout_s,
            max_idle=config.destination_concurrency,
            tls=config.tls_client,
        )
        self.bouncer = Bouncer(config, spool, self.queued)
        self.router = Router(config)
        self._sem: asyncio.Semaphore | None = None
        #: messages waiting for their (re)try: spool id -> (timer, entry), so a flush can
        #: move them forward
        self._waiting: dict[str, tuple[asyncio.TimerHandle, SpoolEntry]] = {}
        #: delivery slots per destination (Postfix default_destination_concurrency_limit)
        self._per_dest: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- lifecycle

    def start(self) -> None:
        """Inside the running loop: the resolver, and an attempt for every spooled message."""
        self._sem = asyncio.Semaphore(self.config.delivery_limit)
        self.router.start()
        for entry in self.spool.recover():
            self._schedule(entry, entry.next_retry)

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop delivering: no new attempt starts, the running ones may finish within
        ``grace_s`` (a graceful stop, like ``postfix stop``: a message the next hop took
        leaves the spool instead of being sent again after a restart); what is still
        running then is cancelled. Undelivered messages stay spooled for the next start."""
        self._stopping = True
        for timer, _ in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        running = [t for t in self._tasks if not t.done()]
        if running and grace_s > 0:
            await asyncio.wait(running, timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await self.pool.close()

    def queued(self, entry: SpoolEntry) -> None:
        """A message just spooled (received, or a bounce made here): journal it, attempt it."""
        self.tracer.queued(entry.trace_id, entry.id, entry.flow)
        self._schedule(entry, 0.0)

    def flush(self) -> int:
        """Try every deferred message now, whatever its backoff (Postfix ``postqueue -f``).

        The supervisor asks for it when a host this one delivers to is back, so mail
        held for it does not wait out a retry period (issue #13). Returns how many
        messages were moved forward; attempts running now are left alone.
        """
        now, loop_now = time.time(), asyncio.get_running_loop().time()
        moved = 0
        for timer, entry in list(self._waiting.values()):
            if timer.when() <= loop_now:
                continue  # due anyway
            entry.next_retry = now
            self._schedule(entry, now)
            moved += 1
        if moved:
            log.info("flush: %d deferred message(s) retried now", moved)
        return moved

    # -- scheduling

    def _schedule(self, entry: SpoolEntry, at: float) -> None:
        if self._stopping:
            return  # it stays spooled: the next start recovers it
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())
        earlier = self._waiting.pop(entry.id, None)
        if earlier is not None:  # one timer per message: a flush replaces the backoff's
            earlier[0].cancel()

        def fire() -> None:
            if self._waiting.get(entry.id, (None,))[0] is handle:
                del self._waiting[entry.id]
            task = loop.create_task(self._deliver(entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        handle = loop.call_later(delay, fire)
        self._waiting[entry.id] = (handle, entry)

    def _destination(self, entry: SpoolEntry) -> asyncio.Semaphore:
        """The slots of ``entry``'s destination: the next tier, or its first recipient's
        domain (mail for several domains waits on the first one's slots)."""
        c = self.config
        first = entry.rcpt_tos[0] if entry.rcpt_tos else ""
        key = c.next_hop_name if c.next_hop else domain_of(first)
        sem = self._per_dest.get(key)
        if sem is None:
            sem = self._per_dest[key] = asyncio.Semaphore(c.destination_concurrency)
        return sem

    async def _deliver(self, entry: SpoolEntry) -> None:
        assert self._sem is not None
        # a slot of the destination first, then one of the host's (as the model does)
        async with self._destination(entry), self._sem:
            if self._stopping:
                return  # waited for a slot while a stop began: not started, still spooled
            try:
                await self._deliver_once(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery of %s failed", entry.id)
                entry.next_retry = time.time() + self.config.backoff(entry.attempts + 1)
                self._schedule(entry, entry.next_retry)

    async def _deliver_once(self, entry: SpoolEntry) -> None:
        c = self.config
        record = HopRecord.from_dict(entry.record) if entry.record else None
        t0, c0 = time.time(), time.thread_time()
        done, failed, pending, hop = await self._attempt(entry, list(entry.rcpt_tos), record)
        if pending and c.fallback:
            # like Postfix smtp_fallback_relay: every failed attempt is offered to the fallback
            entry.fallback_tried = True
            accepted, perm, pending, host = await self._try_hosts(
                self.router.ordered(c.fallback), entry, pending
            )
            done += accepted
            failed.update(perm)
            if accepted:
                hop = c.host_ids.get(host, c.fallback_name)
        t1 = time.time()
        if record is not None:
            record.stages["deliver"] = StageSpan(t0, t1, time.thread_time() - c0)
            record.next_hop = hop or record.next_hop
        if failed:
            # a notice to the postmaster that failed is kept for retry, never dropped
            pending += await self.bouncer.bounce(entry, failed)
        entry.attempts += 1
        if pending and t1 - entry.first_accepted >= c.max_queue_lifetime_s:
            pending = await self.bouncer.bounce(
                entry,
                dict.fromkeys(
                    pending,
                    SmtpError(554, "5.4.7 delivery time expired, last error kept in the log"),
                ),
            )
            if record is not None and not pending:
                record.outcome = "bounced"
        if pending:
            entry.rcpt_tos = pending
            entry.next_retry = t1 + c.backoff(entry.attempts)
            if record is not None:
                entry.record = record_dict(record)
            await self.spool.update(entry)
            self._schedule(entry, entry.next_retry)
            return
        if record is not None:
            # traced before the spool removal: a stop that cancels the removal must not
            # lose the record of a hand-off that did happen
            record.left = t1  # the next hop's 250 (HopRecord.left), not our removal after it
            if not done:
                record.outcome = "bounced"
            elif not hop:
                record.outcome = "remote"  # handed to a remote domain's MX
            self.tracer.write(record)
        await self.spool.remove(entry.id)

    # -- one attempt

    async def _attempt(
        self, entry: SpoolEntry, rcpts: list[str], record: HopRecord | None
    ) -> Outcome:
        """One delivery attempt: (delivered, permanently failed, still pending, next hop).

        The next hop is named like the model names it: the host id of the host that
        took the message (``gateway1.0``), or "" when it left our system (a remote MX).
        """
        routes, failed = await self.router.routes(entry, rcpts, record)
        done: list[str] = []
        pending: list[str] = []
        hop = ""
        for hosts, group in routes:
            accepted, perm, left, host = await self._try_hosts(hosts, entry, group)
            done += accepted
            failed.update(perm)
            pending += left
            if accepted:
                hop = self.router.hop_name(host)
        return done, failed, pending, hop

    async def _try_hosts(self, hosts: list[str], entry: SpoolEntry, rcpts: list[str]) -> Outcome:
        """Try each host until one takes the message.

        (accepted, permanent refusals, still pending, the host that answered).
        """
        for host in hosts:
            try:
                result = await self.pool.send(
                    host, self.config.next_hop_port, entry.mail_from, rcpts, entry.data
                )
            except SmtpError as e:
                if e.permanent and not isinstance(e, ConnectError):
                    return [], dict.fromkeys(rcpts, e), [], host
                continue  # connect failure or 4xx: try the twin / next MX
            permanent = {r: e for r, e in result.refused.items() if e.permanent}
            pending = [r for r in rcpts if r not in result.accepted and r not in permanent]
            return result.accepted, permanent, pending, host
        return [], {}, list(rcpts), ""
