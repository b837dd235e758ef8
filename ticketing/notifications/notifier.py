"""The exactly-once core: for each recipient, claim in the sent-log, build, send, mark.

A fan-out (an event's holders) is worked in chunks of ``CHUNK`` recipients: claim the chunk,
send its messages ``concurrency`` at a time, mark each one as soon as its server answered.
Claiming per chunk (not the whole list up front) bounds what a crash leaves in 'sending'
(retried after the claim goes stale) to one chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from ticketing.notifications.errors import ChannelDisabled, SendFailed
from ticketing.notifications.metrics import NotificationMetrics
from ticketing.notifications.sent_log import Channel, SentLog

logger = logging.getLogger(__name__)

CHUNK = 200


class Target(msgspec.Struct, frozen=True):
    """``key`` identifies the recipient in the sent-log (an address, or a digest of one where
    the address must not be kept); ``address`` is where the message goes."""

    key: str
    address: str


class Outcome(msgspec.Struct):
    sent: int = 0
    failed: int = 0  # failed in this call (recorded in the sent-log)
    skipped: int = 0  # already sent, given up, or being sent elsewhere
    pending: int = 0  # being sent by someone else right now
    unprocessed: int = 0  # not looked at: the time budget ran out first

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.pending == 0 and self.unprocessed == 0


Build = Callable[[Target], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


class Notifier:
    def __init__(self, sent_log: SentLog, metrics: NotificationMetrics, *, concurrency: int) -> None:
        self.sent_log = sent_log
        self.metrics = metrics
        self.concurrency = concurrency

    async def deliver(self, *, event_id: uuid.UUID | str, kind: str, channel: Channel, targets: Sequence[Target],
                      build: Build, send: Send, deadline: float | None = None) -> Outcome:
        """Send ``build(target)`` through ``send`` to every target not yet served for this
        (event_id, kind). Never raises for a failed send: the outcome counts it. With a
        ``deadline`` (``time.monotonic()``), no new chunk is started after it."""
        by_key = {t.key: t for t in targets}
        outcome = Outcome()
        keys = sorted(by_key)
        limiter = asyncio.Semaphore(self.concurrency)
        unclaimed: list[str] = []
        for i in range(0, len(keys), CHUNK):
            if deadline is not None and i > 0 and time.monotonic() > deadline:
                outcome.unprocessed = len(keys) - i
                break
            chunk = keys[i:i + CHUNK]
            claims = await self.sent_log.claim(event_id, kind, channel, chunk)
            claimed = {c.recipient for c in claims}
            unclaimed.extend(k for k in chunk if k not in claimed)
            results = await asyncio.gather(*(
                self._one(limiter, event_id, kind, channel, by_key[c.recipient], build, send) for c in claims))
            outcome.sent += sum(1 for ok in results if ok)
            outcome.failed += sum(1 for ok in results if not ok)
        outcome.skipped = len(unclaimed)
        if unclaimed:
            self.metrics.skipped_total.labels(kind, channel, "already_sent").inc(len(unclaimed))
            # Not claimable now yet not finished: another consumer holds a fresh claim on them.
            outcome.pending = len(await self.sent_log.unfinished(event_id, kind, unclaimed))
        return outcome

    async def _one(self, limiter: asyncio.Semaphore, event_id: uuid.UUID | str, kind: str, channel: Channel,
                   target: Target, build: Build, send: Send) -> bool:
        """One claimed recipient: build, send, mark. A claim is never left 'sending' by a
        cancellation (shutdown, the bus's handler timeout): it is given back as failed so the
        next delivery retries at once. If the server had already accepted the message, that is
        the documented at-most-twice window."""
        marked = False
        try:
            async with limiter:
                try:
                    message = await build(target)
                except Exception as exc:  # a bug or unreadable data: recorded, never silent
                    logger.exception("notification_build_failed", extra={"kind": kind})
                    marked = True
                    await self.sent_log.mark_failed(event_id, target.key, kind, f"build: {type(exc).__name__}")
                    self.metrics.failed_total.labels(kind, channel, "error").inc()
                    return False
                started = time.perf_counter()
                try:
                    await send(message)
                except SendFailed as exc:
                    marked = True
                    await self.sent_log.mark_failed(event_id, target.key, kind, str(exc))
                    self.metrics.failed_total.labels(kind, channel, exc.reason).inc()
                    if not isinstance(exc, ChannelDisabled):
                        logger.warning("notification_failed", extra={"kind": kind, "channel": channel,
                                                                     "reason": exc.reason, "error": str(exc)})
                    return False
                except Exception as exc:
                    logger.exception("notification_send_crashed", extra={"kind": kind, "channel": channel})
                    marked = True
                    await self.sent_log.mark_failed(event_id, target.key, kind, f"send: {type(exc).__name__}")
                    self.metrics.failed_total.labels(kind, channel, "error").inc()
                    return False
                finally:
                    self.metrics.send_seconds.labels(channel).observe(time.perf_counter() - started)
                marked = True
                await self.sent_log.mark_sent(event_id, target.key, kind)
                self.metrics.sent_total.labels(kind, channel).inc()
                return True
        except asyncio.CancelledError:
            if not marked:
                await asyncio.shield(self.sent_log.mark_failed(event_id, target.key, kind, "interrupted"))
            raise
