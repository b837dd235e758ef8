"""The notifications' collaborators in one object, and what each kind of message takes:
who gets it (read from PostgreSQL), how it is built, through which channel it goes.

- order confirmation: one e-mail to the order's address (+ one SMS when the event carries a
  phone number), sent by the bus handler itself;
- event updated / cancelled / reminder: fan-outs to every holder, run as jobs (``run_job``);
- your turn: one e-mail per admitted visitor who left an address (``send_your_turn``);
- payment flagged: one e-mail to the event's organizer (``payment_flagged``: a dispute, or a charge
  whose amount or currency differ from the order's).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg

from stagedoor.settings import Settings
from ticketing.notifications.errors import NotificationsIncomplete
from ticketing.notifications.job_store import Job, JobStore
from ticketing.notifications.mailer import Mailer, SmtpMailer
from ticketing.notifications.messages import Composer, message_id
from ticketing.notifications.metrics import NotificationMetrics
from ticketing.notifications.notifier import Notifier, Outcome, Target
from ticketing.notifications.recipients import HOLDING, HOLDING_OR_REFUNDED, EventInfo, OrderInfo, Recipients
from ticketing.notifications.sent_log import SentLog
from ticketing.notifications.sms import MAX_SMS_CHARS, SmsMessage, SmsProvider, sms_provider, valid_phone

logger = logging.getLogger(__name__)

T = TypeVar("T")

JOB_NAMESPACE = uuid.UUID("a4a0f0de-4a43-4c1c-8f57-8d0f3a7f6c21")
# EventUpdated fields a ticket holder cares about (a price-tier or hold-TTL change is not news to them).
NOTABLE_FIELDS = frozenset({"title", "starts_at", "ends_at", "venue", "description"})


def reminder_job_id(event_id: int, starts_at: dt.datetime) -> uuid.UUID:
    """One reminder per event and start time: a rescheduled event is reminded again."""
    return uuid.uuid5(JOB_NAMESPACE, f"reminder|{event_id}|{starts_at.astimezone(dt.UTC).isoformat()}")


def your_turn_id(room: str, visitor_id: str) -> uuid.UUID:
    return uuid.uuid5(JOB_NAMESPACE, f"your_turn|{room}|{visitor_id}")


def address_digest(address: str) -> str:
    """The sent-log key of an address we must not keep (a waiting visitor's)."""
    return "sha256:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()[:40]


class Notifications:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, metrics: NotificationMetrics, *,
                 mailer: Mailer | None = None, sms: SmsProvider | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.recipients = Recipients(pool)
        self.sent_log = SentLog(pool, stale_s=settings.notification_claim_stale_s,
                                max_attempts=settings.notification_max_attempts)
        self.jobs = JobStore(pool)
        self.notifier = Notifier(self.sent_log, metrics, concurrency=settings.notification_concurrency)
        self.composer = Composer(settings)
        self.mailer: Mailer = mailer or SmtpMailer(settings)
        self.sms: SmsProvider = sms or sms_provider(settings)
        self.jobs_ready = asyncio.Event()  # set when a job is recorded: the job loop runs at once

    @property
    def email_enabled(self) -> bool:
        return bool(getattr(self.mailer, "enabled", True))

    async def close(self) -> None:
        for transport in (self.sms, self.mailer):
            close = getattr(transport, "close", None)
            if close is not None:
                await close()

    async def _cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """Templates and QR codes off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    def _disabled(self, kind: str, count: int) -> Outcome:
        self.metrics.skipped_total.labels(kind, "email", "disabled").inc(count)
        logger.warning("notification_email_disabled", extra={"kind": kind, "recipients": count})
        return Outcome(skipped=count)

    # -- order confirmation (bus handler)
    async def order_confirmed(self, envelope_id: str, order_id: str, phone: object = None) -> list[Outcome]:
        order = await self.recipients.order(order_id)
        if order is None:
            logger.warning("notification_order_missing", extra={"order_id": order_id})
            return []
        event = await self.recipients.event(order.event_id)
        if event is None:
            logger.warning("notification_event_missing", extra={"event_id": order.event_id})
            return []
        outcomes = []
        kind = "order_confirmed"
        target = Target(key=order.email.strip().lower(), address=order.email)
        if self.email_enabled:
            async def build(t: Target) -> Any:
                return await self._cpu(self.composer.order_confirmed, order, event,
                                       message_id(envelope_id, t.key, kind))
            outcomes.append(await self.notifier.deliver(event_id=envelope_id, kind=kind, channel="email",
                                                        targets=[target], build=build, send=self.mailer.send))
        else:
            outcomes.append(self._disabled(kind, 1))
        number = valid_phone(phone)
        if number is not None:
            outcomes.append(await self._order_sms(envelope_id, order, event, number))
        return outcomes

    async def _order_sms(self, envelope_id: str, order: OrderInfo, event: EventInfo, number: str) -> Outcome:
        kind = "order_confirmed"
        text = (f"stagedoor: {len(order.tickets)} ticket(s) for {event.title}, "
                f"{event.starts_at.astimezone(dt.UTC):%d %b %Y %H:%M} UTC. "
                f"Order and QR codes: {self.composer.ticketing_url}/orders/{order.id}")[:MAX_SMS_CHARS]

        async def build(t: Target) -> SmsMessage:
            return SmsMessage(to=t.address, text=text, idempotency_key=f"{envelope_id}:{kind}:{t.key}")
        return await self.notifier.deliver(event_id=envelope_id, kind=kind, channel="sms",
                                           targets=[Target(number, number)], build=build, send=self.sms.send)

    # -- payment flags (bus handler)
    async def payment_flagged(self, envelope_id: str, flag_id: int) -> list[Outcome]:
        flag = await self.recipients.payment_flag(flag_id)
        if flag is None:
            logger.warning("notification_flag_missing", extra={"flag_id": flag_id})
            return []
        event = await self.recipients.event(flag.event_id)
        if event is None:
            logger.warning("notification_event_missing", extra={"event_id": flag.event_id})
            return []
        kind = "payment_flagged"
        if not self.email_enabled:
            return [self._disabled(kind, 1)]

        async def build(t: Target) -> Any:
            return await self._cpu(self.composer.payment_flagged, flag, event, message_id(envelope_id, t.key, kind))
        target = Target(key=flag.organizer_email.strip().lower(), address=flag.organizer_email)
        return [await self.notifier.deliver(event_id=envelope_id, kind=kind, channel="email", targets=[target],
                                            build=build, send=self.mailer.send)]

    async def waitlist_offer(self, envelope_id: str, offer_id: str) -> list[Outcome]:
        """The fan next on a waiting list is told tickets are held for them (ticketing/waitlist/)."""
        offer = await self.recipients.waitlist_offer(offer_id)
        if offer is None:
            logger.warning("notification_offer_missing", extra={"offer_id": offer_id})
            return []
        if offer.status != "pending":  # accepted, bought or over already: nothing to tell
            return []
        event = await self.recipients.event(offer.event_id)
        if event is None:
            logger.warning("notification_event_missing", extra={"event_id": offer.event_id})
            return []
        kind = "waitlist_offer"
        if not self.email_enabled:
            return [self._disabled(kind, 1)]

        async def build(t: Target) -> Any:
            return await self._cpu(self.composer.waitlist_offer, offer, event, message_id(envelope_id, t.key, kind))
        target = Target(key=offer.email.strip().lower(), address=offer.email)
        return [await self.notifier.deliver(event_id=envelope_id, kind=kind, channel="email", targets=[target],
                                            build=build, send=self.mailer.send)]

    # -- fan-outs (jobs)
    async def record_job(self, job_id: uuid.UUID | str, kind: str, event_id: int, details: dict[str, Any]) -> bool:
        created = await self.jobs.create(job_id, kind, event_id, details)
        if created:
            logger.info("notification_job_recorded", extra={"kind": kind, "event_id": event_id})
            self.jobs_ready.set()
        return created

    async def run_job(self, job: Job, deadline: float | None = None) -> Outcome:
        """One pass over a fan-out; marks the job complete when every holder is done."""
        event = await self.recipients.event(job.subject)
        now = dt.datetime.now(dt.UTC)
        if event is None or (job.kind == "reminder" and (event.status == "cancelled" or event.starts_at <= now)) \
                or (job.kind == "event_updated" and event.status == "cancelled"):
            await self.jobs.complete(job.job_id, 0)  # nothing (left) to say
            return Outcome()
        statuses = HOLDING_OR_REFUNDED if job.kind == "event_cancelled" else HOLDING
        holders = await self.recipients.holders(event.id, statuses)
        if not self.email_enabled:
            outcome = self._disabled(job.kind, len(holders))
            await self.jobs.complete(job.job_id, 0)
            return outcome
        build = self._fanout_builder(job, event)
        outcome = await self.notifier.deliver(
            event_id=job.job_id, kind=job.kind, channel="email", targets=[Target(h, h) for h in holders],
            build=build, send=self.mailer.send, deadline=deadline)
        if outcome.unprocessed == 0 and outcome.pending == 0:
            left = await self.sent_log.unfinished(job.job_id, job.kind, holders)
            if not left:
                await self.jobs.complete(job.job_id, len(holders))
                logger.info("notification_job_completed", extra={
                    "kind": job.kind, "event_id": event.id, "recipients": len(holders)})
        return outcome

    def _fanout_builder(self, job: Job, event: EventInfo) -> Callable[[Target], Any]:
        composer = self.composer
        if job.kind == "event_cancelled":
            def make(t: Target) -> Any:
                return composer.event_cancelled(event, t.address, message_id(job.job_id, t.key, job.kind))
        elif job.kind == "event_updated":
            changes = [f for f in job.details.get("fields", []) if f in NOTABLE_FIELDS]
            sequence = int(job.details.get("sequence", 0))

            def make(t: Target) -> Any:
                return composer.event_updated(event, t.address, changes, message_id(job.job_id, t.key, job.kind),
                                              sequence)
        elif job.kind == "reminder":
            def make(t: Target) -> Any:
                return composer.reminder(event, t.address, message_id(job.job_id, t.key, job.kind))
        else:
            raise ValueError(f"unknown fan-out kind {job.kind!r}")

        async def build(t: Target) -> Any:
            return await self._cpu(make, t)
        return build

    async def run_open_jobs(self, budget_s: float = 20.0) -> bool:
        """One pass over the open jobs, oldest first, within a time budget; True when the
        budget ran out with work left (the caller runs the next pass at once)."""
        deadline = time.monotonic() + budget_s
        for job in await self.jobs.open_jobs():
            if time.monotonic() > deadline:
                return True
            outcome = await self.run_job(job, deadline=deadline)
            if outcome.unprocessed:
                return True
        return False

    # -- your turn
    async def send_your_turn(self, room: str, visitor_id: str, address: str, expires_ms: int) -> Outcome:
        kind = "your_turn"
        if not self.email_enabled:
            return self._disabled(kind, 1)
        notification_id = your_turn_id(room, visitor_id)

        async def build(t: Target) -> Any:
            return await self._cpu(self.composer.your_turn, room, t.address, expires_ms,
                                   message_id(notification_id, t.key, kind))
        return await self.notifier.deliver(
            event_id=notification_id, kind=kind, channel="email",
            targets=[Target(address_digest(address), address)], build=build, send=self.mailer.send)


def raise_if_incomplete(kind: str, outcomes: list[Outcome]) -> None:
    failed = sum(o.failed for o in outcomes)
    pending = sum(o.pending for o in outcomes)
    if failed or pending:
        raise NotificationsIncomplete(kind, failed, pending)
