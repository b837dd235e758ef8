"""Notification-test helpers: SMTP sinks (one that refuses the first messages), bus envelopes,
a metric's value, a port nobody listens on, and events, orders and tickets inserted in bulk."""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from stagedoor.bus_envelope import Envelope as BusEnvelope
from stagedoor.dev_mail import MailSink
from stagedoor.keys import KeyRing
from ticketing.notifications.service import Notifications
from ticketing.tickets.codes import sign_ticket_code


class FlakySink(MailSink):
    """Answers ``reply`` to the first ``fail`` messages (all of them when ``fail`` < 0)."""

    def __init__(self, fail: int = 0, reply: str = "451 4.3.0 Try again later") -> None:
        super().__init__()
        self.fail = fail
        self.reply = reply
        self.attempts = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.fail < 0 or self.attempts <= self.fail:
            return self.reply
        return await super().handle_DATA(server, session, envelope)


class Sink:
    """A started SMTP sink: its handler (the messages it took) and its port."""

    def __init__(self, handler: MailSink, port: int) -> None:
        self.handler = handler
        self.port = port

    @property
    def count(self) -> int:
        return len(self.handler.messages)

    def recipients(self) -> list[str]:
        return [r for rcpts, _ in self.handler.messages for r in rcpts]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envelope(event_type: str, aggregate_id: str, payload: dict[str, Any], event_id: str | None = None) -> BusEnvelope:
    return BusEnvelope(event_id=event_id or str(uuid.uuid4()), event_type=event_type, event_version=1,
                       aggregate_id=aggregate_id, payload=payload, created_at_ms=int(time.time() * 1000))


def metric(n: Notifications, name: str, **labels: str) -> float:
    return n.metrics.registry.get_sample_value(name, labels) or 0.0


class Catalog:
    """Users, events, orders and tickets inserted directly in SQL (fast, in bulk)."""

    def __init__(self, pool: asyncpg.Pool, keyring: KeyRing) -> None:
        self.pool = pool
        self.keyring = keyring
        self._buyer: str | None = None

    async def user(self, email: str | None = None, name: str = "Ada Buyer", roles: list[str] | None = None) -> str:
        return str(await self.pool.fetchval(
            "INSERT INTO users (email, password_hash, name, roles) VALUES ($1, 'x', $2, $3) RETURNING id",
            email or f"u-{uuid.uuid4().hex[:10]}@example.test", name, roles or ["customer"]))

    async def event(self, *, starts_in: dt.timedelta = dt.timedelta(days=30), title: str = "Night at the Opera",
                    status: str = "on_sale") -> int:
        organizer = await self.user(roles=["organizer"], name="Org")
        venue = await self.pool.fetchval(
            "INSERT INTO venues (name, city, address) VALUES ($1, 'Vienna', 'Opernring 2') RETURNING id",
            f"Opera {uuid.uuid4().hex[:6]}")
        starts = dt.datetime.now(dt.UTC) + starts_in
        event_id = await self.pool.fetchval(
            """INSERT INTO events (organizer_id, venue_id, status, title, category, city, starts_at, ends_at,
                                   currency, max_tickets_per_order, seated)
               VALUES ($1::uuid, $2, $3, $4, 'opera', 'Vienna', $5, $6, 'EUR', 10, false) RETURNING id""",
            organizer, venue, status, title, starts, starts + dt.timedelta(hours=3))
        await self.pool.execute(
            "INSERT INTO price_tiers (event_id, code, name, price, quantity, position) "
            "VALUES ($1, 'ga', 'Standing', 4500, 100000, 0)", event_id)
        return int(event_id)

    async def orders(self, event_id: int, emails: list[str], tickets_per_order: int = 1,
                     status: str = "confirmed") -> list[str]:
        """One order per address (same buyer account), ``tickets_per_order`` GA tickets each."""
        if self._buyer is None:
            self._buyer = await self.user()
        order_ids = [str(uuid.uuid4()) for _ in emails]
        exp = int(time.time()) + 86_400
        ticket_rows = []
        for oid in order_ids:
            for _ in range(tickets_per_order):
                tid = str(uuid.uuid4())
                ticket_rows.append((tid, oid, sign_ticket_code(self.keyring, tid, str(event_id), exp)))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO orders (id, user_id, event_id, hold_id, status, subtotal, total, currency, email)
                   SELECT o, $2::uuid, $3, 'h-' || o, $4, 4500 * $5, 4500 * $5, 'EUR', e
                   FROM unnest($1::uuid[], $6::text[]) AS x(o, e)""",
                order_ids, self._buyer, event_id, status, tickets_per_order, emails)
            await conn.execute(
                """INSERT INTO tickets (id, order_id, event_id, seat_id, tier, price, code)
                   SELECT t, o, $3, NULL, 'ga', 4500, c
                   FROM unnest($1::uuid[], $2::uuid[], $4::text[]) AS x(t, o, c)""",
                [r[0] for r in ticket_rows], [r[1] for r in ticket_rows], event_id, [r[2] for r in ticket_rows])
        return order_ids
