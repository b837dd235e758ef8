"""Payments that reconcile, over HTTP with a gateway double that keeps a ledger (tests/support/payments.py):
a charge whose answer is lost is never charged twice (the retry with the same Idempotency-Key gets the
same charge, or the worker's reconciler turns it into an order or a refund); a commit whose outcome is
unknown is never refunded; a cancelled event cannot be bought; failed refunds are retried with backoff,
counted apart and exported."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import pytest

from stagedoor.redis_keys import RedisKeys
from stagedoor.web import DB, KEYS, REDIS
from tests.support.events import buy, hold_seats
from tests.support.payments import (
    age_payments,
    make_refunds_due,
    payment_rows,
)
from ticketing.appkeys import ORDERS, PAYMENTS, PURCHASES, RECONCILER
from ticketing.payments.refunding import refund_backoff_s


@pytest.fixture
def stack(payment_stack: Any) -> Any:
    return payment_stack


# the purchase statement waiting for the event's sales lock (its text is too long for pg_stat_activity)
WAITING_ON_SALES_LOCK = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND wait_event = 'advisory' AND query LIKE '%WITH new_order AS%'
"""


async def _count(db: asyncpg.Pool, sql: str) -> int:
    return int(await db.fetchval(sql))


async def _metric(client: Any, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _seat_state(client: Any, event_id: str, seat: str) -> str:
    keys: RedisKeys = client.app[KEYS]
    value = await client.app[REDIS].hget(keys.inventory_seats(event_id), seat)
    return "sold" if value == b"s" else "free" if value == b"0" else "held"


# ---------------------------------------------------------------- a charge whose answer is lost

async def test_a_charge_that_times_out_then_the_same_key_gives_one_charge_and_one_order(stack, make_event,
                                                                                      create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1", "s2"])
    s.double.hang_after_charge = 1
    first = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert first.status == 502, await first.text()
    db = s.shop.app[DB]
    assert len(s.double.charges) == 1  # charged, though the purchase never heard it
    assert [r["status"] for r in await payment_rows(db)] == ["unknown"]
    assert await _count(db, "SELECT count(*) FROM orders") == 0
    again = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert again.status == 201, await again.text()
    order = await again.json()
    assert len(s.double.charges) == 1 and not s.double.refunds  # the same charge, reused
    assert await _count(db, "SELECT count(*) FROM orders") == 1
    rows = await payment_rows(db)
    assert [(r["status"], r["order_id"]) for r in rows] == [("succeeded", order["order_id"])]
    assert rows[0]["charge_id"] == next(iter(s.double.charges.values()))["id"]
    replay = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert replay.status == 201 and (await replay.json())["order_id"] == order["order_id"]
    assert len(s.double.charges) == 1 and s.double.net_charges == 1


async def test_an_unanswered_charge_nobody_retries_is_completed_by_the_reconciler(stack, make_event,
                                                                                 create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)  # hold_ttl 600 s: the hold outlives the payment window
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    s.double.hang_after_charge = 1
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502
    db = s.shop.app[DB]
    reconciler = s.worker.app[RECONCILER]
    assert (await reconciler.run_once()).completed == 0  # inside the payment window: left alone
    await age_payments(db, s.settings.payment_window_s + 1)
    run = await reconciler.run_once()
    assert run.completed == 1, run
    assert len(s.double.charges) == 1 and not s.double.refunds
    rows = await payment_rows(db)
    assert rows[0]["status"] == "succeeded" and rows[0]["order_id"] is not None
    assert await _count(db, "SELECT count(*) FROM tickets WHERE seat_id = 's1'") == 1
    assert await _seat_state(s.shop, event["id"], "s1") == "sold"
    # the fan's late retry with the same key gets that order, and no second charge
    again = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert again.status == 201, await again.text()
    assert (await again.json())["order_id"] == rows[0]["order_id"]
    assert len(s.double.charges) == 1 and s.double.charge_requests == 1
    assert await _metric(s.worker, 'ticketing_payments_reconciled_total{outcome="completed"}') == 1


async def test_an_unanswered_charge_whose_hold_is_gone_is_refunded_by_the_reconciler(stack, make_event,
                                                                                    create_user,
                                                                                    manual_clock) -> None:
    s = await stack(payment_window_s=30)
    event = await make_event(s.shop, hold_ttl_s=30)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    s.double.hang_after_charge = 1
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502
    manual_clock.advance(120_000)  # the hold and its payment window ran out
    db = s.shop.app[DB]
    await age_payments(db, 31)
    run = await s.worker.app[RECONCILER].run_once()
    assert run.refunded == 1, run
    charge = next(iter(s.double.charges.values()))
    assert s.double.refunds == {charge["id"]: s.double.refunds[charge["id"]]} and s.double.net_charges == 0
    rows = await payment_rows(db)
    assert [(r["status"], r["reason"]) for r in rows] == [("refunded", "hold_lost")]
    assert await _count(db, "SELECT count(*) FROM orders") == 0
    assert await _metric(s.worker, 'ticketing_refunds_total{reason="hold_lost"}') == 1
    assert await _metric(s.worker, "ticketing_refunds_failed_total") == 0
    # settled: another round changes nothing
    assert await s.worker.app[RECONCILER].run_once() == type(run)()
    assert len(s.double.refunds) == 1 and s.double.refund_requests == 1


async def test_a_failure_before_the_charge_is_settled_as_failed_and_the_same_key_buys(stack, make_event,
                                                                                     create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    s.double.fail_before_charge = 1
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502
    db = s.shop.app[DB]
    await age_payments(db, s.settings.payment_window_s + 1)
    run = await s.worker.app[RECONCILER].run_once()
    assert run.failed == 1 and not s.double.charges, run
    assert [r["status"] for r in await payment_rows(db)] == ["failed"]
    # the key may buy again: a new row and a new gateway key (nothing was charged under the old one)
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 201
    assert [(r["status"], r["seq"]) for r in await payment_rows(db)] == [("failed", 0), ("succeeded", 1)]
    assert len(s.double.charges) == 1


async def test_racing_retries_of_a_timed_out_charge_never_charge_twice(stack, make_event, create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    s.double.hang_after_charge = 1
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502
    responses = await asyncio.gather(*(buy(s.shop, fan, hold["hold_id"], key="k") for _ in range(6)))
    statuses = sorted(r.status for r in responses)
    assert 201 in statuses and set(statuses) <= {201, 409}, statuses
    await age_payments(s.shop.app[DB], s.settings.payment_window_s + 1)
    await s.worker.app[RECONCILER].run_once()
    assert len(s.double.charges) == 1 and not s.double.refunds
    assert await _count(s.shop.app[DB], "SELECT count(*) FROM orders") == 1


# ---------------------------------------------------------------- commit outcome unknown

class _DroppingPool:
    """Wraps the order store's pool: the purchase statement runs, then its connection 'drops' before the
    answer arrives (``after=True``: committed; ``after=False``: never sent)."""

    def __init__(self, pool: asyncpg.Pool, *, after: bool) -> None:
        self.pool = pool
        self.after = after
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    async def acquire(self) -> Any:
        return _DroppingConnection(self, await self.pool.acquire())

    async def release(self, conn: Any) -> None:
        await self.pool.release(conn.inner)


class _DroppingConnection:
    def __init__(self, owner: _DroppingPool, inner: Any) -> None:
        self.owner = owner
        self.inner = inner

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if self.owner.armed and "event_sales_open" in query:
            self.owner.armed = False
            if self.owner.after:
                await self.inner.fetchrow(query, *args)
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return await self.inner.fetchrow(query, *args)


async def test_a_commit_whose_connection_drops_after_committing_is_not_refunded_and_the_retry_replays_it(
        stack, make_event, create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    orders = s.shop.app[ORDERS]
    real_pool = orders.pool
    orders.pool = _DroppingPool(real_pool, after=True)
    try:
        first = await buy(s.shop, fan, hold["hold_id"], key="k")
    finally:
        orders.pool = real_pool
    assert first.status == 503, await first.text()
    assert first.headers["Retry-After"] == "2"
    db = s.shop.app[DB]
    order_id = await db.fetchval("SELECT id::text FROM orders")
    assert order_id is not None  # it did commit
    assert not s.double.refunds and len(s.double.charges) == 1  # and its charge was not refunded
    assert [(r["status"], r["order_id"]) for r in await payment_rows(db)] == [("succeeded", order_id)]
    again = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert again.status == 201, await again.text()
    assert (await again.json())["order_id"] == order_id
    assert await _seat_state(s.shop, event["id"], "s1") == "sold"
    # the reconciler has nothing to do; nothing was ever refunded
    await age_payments(db, s.settings.payment_window_s + 1)
    run = await s.worker.app[RECONCILER].run_once()
    assert run.refunded == 0 and not s.double.refunds and len(s.double.charges) == 1


async def test_a_commit_whose_connection_drops_before_committing_is_completed_by_the_retry_with_the_same_charge(
        stack, make_event, create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    orders = s.shop.app[ORDERS]
    real_pool = orders.pool
    orders.pool = _DroppingPool(real_pool, after=False)
    try:
        first = await buy(s.shop, fan, hold["hold_id"], key="k")
    finally:
        orders.pool = real_pool
    assert first.status == 503 and "Retry-After" in first.headers
    db = s.shop.app[DB]
    assert await _count(db, "SELECT count(*) FROM orders") == 0
    assert not s.double.refunds  # unknown outcome: no refund
    assert [r["status"] for r in await payment_rows(db)] == ["unknown"]
    again = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert again.status == 201, await again.text()
    assert len(s.double.charges) == 1 and not s.double.refunds and s.double.charge_requests == 2
    assert [r["status"] for r in await payment_rows(db)] == ["succeeded"]


async def test_a_terminated_backend_during_the_commit_never_refunds_a_confirmed_order(stack, make_event,
                                                                                     create_user) -> None:
    """The commit's backend is killed while the statement waits (on the event's sales lock): whatever
    happened, a confirmed order keeps its charge and the retry settles the purchase with one charge."""
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    db = s.shop.app[DB]
    blocker = await db.acquire()
    tx = blocker.transaction()
    await tx.start()
    await blocker.fetchval("SELECT close_event_sales($1)", int(event["id"]))  # the purchase will wait on it
    task = asyncio.create_task(buy(s.shop, fan, hold["hold_id"], key="k"))
    pid = None
    for _ in range(200):
        pid = await db.fetchval(WAITING_ON_SALES_LOCK)
        if pid:
            break
        await asyncio.sleep(0.02)
    assert pid, "the purchase statement never waited on the event's sales lock"
    await db.fetchval("SELECT pg_terminate_backend($1)", pid)
    await tx.rollback()
    await db.release(blocker)
    first = await task
    assert first.status == 503, await first.text()
    assert not s.double.refunds
    again = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert again.status == 201, await again.text()
    assert len(s.double.charges) == 1 and not s.double.refunds
    assert await _count(db, "SELECT count(*) FROM orders") == 1


# ---------------------------------------------------------------- cancelled events

async def test_a_cancelled_event_cannot_be_bought_on_a_live_hold_and_nothing_is_charged(stack, make_event,
                                                                                       create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    organizer = event["_organizer"]
    assert (await s.shop.delete(f"/api/events/{event['id']}", headers=organizer.headers)).status in (200, 204)
    resp = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["type"] == "/problems/event-not-on-sale"
    db = s.shop.app[DB]
    assert s.double.charge_requests == 0 and not s.double.charges
    assert await _count(db, "SELECT count(*) FROM orders") == 0
    assert await _count(db, "SELECT count(*) FROM payments WHERE status NOT IN ('failed')") == 0


async def test_a_cancellation_redis_has_not_heard_of_is_refused_by_the_commit_and_refunded(stack, make_event,
                                                                                         create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    organizer = event["_organizer"]
    assert (await s.shop.delete(f"/api/events/{event['id']}", headers=organizer.headers)).status in (200, 204)
    # Redis still says on sale (the cancellation's meta write not there yet): only PostgreSQL can refuse
    keys: RedisKeys = s.shop.app[KEYS]
    await s.shop.app[REDIS].hset(keys.inventory_meta(event["id"]), "status", "on_sale")
    resp = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["type"] == "/problems/event-not-on-sale"
    db = s.shop.app[DB]
    assert await _count(db, "SELECT count(*) FROM orders") == 0
    assert len(s.double.charges) == 1 and s.double.net_charges == 0
    assert [(r["status"], r["reason"]) for r in await payment_rows(db)] == [("refunded", "event_not_on_sale")]
    assert await _metric(s.shop, 'ticketing_refunds_total{reason="event_not_on_sale"}') == 1


async def test_a_purchase_waits_for_a_cancellation_in_progress_and_is_refused_once_it_commits(
        stack, make_event, create_user) -> None:
    """The cancellation holds the event's sales lock until it commits; a purchase statement that arrives
    meanwhile waits and then sees 'cancelled' (so the cancellation's refund run never misses an order)."""
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    db = s.shop.app[DB]
    cancel = await db.acquire()
    tx = cancel.transaction()
    await tx.start()
    assert await cancel.fetchval("UPDATE events SET status = 'cancelled' WHERE id = $1 AND close_event_sales($1) "
                                 "RETURNING id", int(event["id"]))
    task = asyncio.create_task(buy(s.shop, fan, hold["hold_id"], key="k"))
    waiting = None
    for _ in range(200):
        waiting = await db.fetchval(WAITING_ON_SALES_LOCK)
        if waiting:
            break
        await asyncio.sleep(0.02)
    assert waiting and not task.done()
    await tx.commit()
    await db.release(cancel)
    resp = await task
    assert resp.status == 409 and (await resp.json())["type"] == "/problems/event-not-on-sale"
    assert await _count(db, "SELECT count(*) FROM orders") == 0
    assert len(s.double.charges) == 1 and s.double.net_charges == 0


# ---------------------------------------------------------------- refunds that fail

async def test_failed_refunds_are_recorded_retried_with_backoff_counted_apart_and_exported(
        stack, make_event, create_user) -> None:
    s = await stack(refund_retry_base_s=10, refund_retry_max_s=1000)
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    organizer = event["_organizer"]
    assert (await s.shop.delete(f"/api/events/{event['id']}", headers=organizer.headers)).status in (200, 204)
    await s.shop.app[REDIS].hset(s.shop.app[KEYS].inventory_meta(event["id"]), "status", "on_sale")
    s.double.refunds_down = True
    resp = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert resp.status == 409
    db = s.shop.app[DB]
    rows = await payment_rows(db)
    assert [(r["status"], r["attempts"]) for r in rows] == [("refund_failed", 1)]
    assert 5 <= rows[0]["backoff_s"] <= 10.5, rows  # base 10 s, jittered into [5, 10]
    assert await _metric(s.shop, "ticketing_refunds_failed_total") == 1
    assert await _metric(s.shop, "ticketing_refunds_total") == 0  # not confirmed: not counted as refunded
    reconciler = s.worker.app[RECONCILER]
    assert (await reconciler.run_once()).refund_failed == 0  # not due yet
    await make_refunds_due(db)
    assert (await reconciler.run_once()).refund_failed == 1
    rows = await payment_rows(db)
    assert rows[0]["attempts"] == 2 and 10 <= rows[0]["backoff_s"] <= 20.5, rows  # doubled
    assert await _metric(s.worker, 'ticketing_refunds_failed_total{reason="event_not_on_sale"}') == 1
    assert await _metric(s.worker, "ticketing_refunds_owed") == 1
    s.double.refunds_down = False
    await make_refunds_due(db)
    assert (await reconciler.run_once()).refunded == 1
    assert [r["status"] for r in await payment_rows(db)] == ["refunded"]
    assert s.double.net_charges == 0 and len(s.double.refunds) == 1
    assert await _metric(s.worker, 'ticketing_refunds_total{reason="event_not_on_sale"}') == 1
    assert await _metric(s.worker, "ticketing_refunds_owed") == 0


def test_the_refund_backoff_doubles_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    for attempts, low, high in ((1, 15, 30), (2, 30, 60), (3, 60, 120), (10, 500, 1000)):
        delays = [refund_backoff_s(attempts, 30, 1000, rng) for _ in range(200)]
        assert all(low <= d <= high for d in delays), (attempts, min(delays), max(delays))
        assert max(delays) - min(delays) > (high - low) / 4  # jittered, not in step


async def test_the_worker_refunds_through_the_configured_gateway(stack) -> None:
    s = await stack()
    assert s.worker.app[PAYMENTS].gateway is s.gateway
    assert s.shop.app[PURCHASES].payments.gateway is s.gateway


async def test_a_retry_with_another_card_after_an_unanswered_charge_gets_that_charge_not_a_second(
        stack, make_event, create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    s.double.hang_after_charge = 1
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502
    # the same key with a card that would be declined: the gateway answers with the key's charge
    again = await buy(s.shop, fan, hold["hold_id"], key="k", token="tok_declined")
    assert again.status == 201, await again.text()
    assert len(s.double.charges) == 1 and not s.double.refunds
    assert [r["status"] for r in await payment_rows(s.shop.app[DB])] == ["succeeded"]


async def test_the_worker_refunds_a_cancelled_events_orders_through_the_configured_gateway(
        stack, make_event, create_user) -> None:
    s = await stack(outbox_relay_interval_ms=50)
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    resp = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert resp.status == 201
    charge_id = next(iter(s.double.charges.values()))["id"]
    organizer = event["_organizer"]
    assert (await s.shop.delete(f"/api/events/{event['id']}", headers=organizer.headers)).status in (200, 204)
    for _ in range(300):  # the outbox relay and the worker's refunds consumer, in the background
        if charge_id in s.double.refunds:
            break
        await asyncio.sleep(0.05)
    assert list(s.double.refunds) == [charge_id]  # over HTTP, at the gateway that took the charge
    db = s.shop.app[DB]
    for _ in range(100):
        if await db.fetchval("SELECT status FROM orders") == "refunded":
            break
        await asyncio.sleep(0.05)
    assert await db.fetchval("SELECT status FROM orders") == "refunded"
    assert [r["status"] for r in await payment_rows(db)] == ["refunded"]


async def test_reconcilers_running_at_once_settle_each_charge_once(stack, make_event, create_user,
                                                                   manual_clock) -> None:
    s = await stack(payment_window_s=30)
    event = await make_event(s.shop, hold_ttl_s=30)
    fans = [await create_user() for _ in range(3)]
    for i, fan in enumerate(fans):
        hold = await hold_seats(s.shop, fan, event["id"], [f"s{i + 1}"])
        s.double.hang_after_charge = 1
        assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502
    manual_clock.advance(120_000)  # every hold is gone: each charge must be refunded, once
    db = s.shop.app[DB]
    await age_payments(db, 31)
    s.double.refunds_down = True
    reconciler = s.worker.app[RECONCILER]
    runs = await asyncio.gather(*(reconciler.run_once() for _ in range(4)))
    assert sum(r.refund_failed for r in runs) == 3, runs  # each row taken by one of them
    assert s.double.refund_requests == 3
    s.double.refunds_down = False
    await make_refunds_due(db)
    runs = await asyncio.gather(*(reconciler.run_once() for _ in range(4)))
    assert sum(r.refunded for r in runs) == 3, runs
    assert s.double.refund_requests == 6 and len(s.double.refunds) == 3 and s.double.net_charges == 0
    assert await _metric(s.worker, "ticketing_refunds_total") == 3
    assert [r["status"] for r in await payment_rows(db)] == ["refunded"] * 3


async def test_a_retry_that_reuses_a_row_voids_the_reconcilers_lease_on_it(stack, make_event, create_user) -> None:
    """The reconciler read the row (and asked the gateway: no charge yet) while the fan's retry reused it
    and charged under its key: the reconciler's 'failed' or refund must not land on that row."""
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    s.double.fail_before_charge = 1
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502
    db = s.shop.app[DB]
    await age_payments(db, s.settings.payment_window_s + 1)
    records = s.worker.app[RECONCILER].deps.records
    [leased] = await records.stale(s.settings.payment_window_s, 10)
    assert leased.gateway_key not in s.double.charges  # what the reconciler's lookup would see now
    s.double.hang_after_charge = 1
    assert (await buy(s.shop, fan, hold["hold_id"], key="k")).status == 502  # the retry charged, unanswered
    assert not await records.mark_failed(leased.gateway_key, "no_charge", lease=leased.updated_at)
    assert not await records.claim_refund(leased.gateway_key, charge_id="ch_x", amount=1, reason="hold_lost",
                                          retry_in_s=60, lease=leased.updated_at)
    assert [r["status"] for r in await payment_rows(db)] == ["unknown"]
    await age_payments(db, s.settings.payment_window_s + 1)
    assert (await s.worker.app[RECONCILER].run_once()).completed == 1
    assert len(s.double.charges) == 1 and not s.double.refunds
    assert await _count(db, "SELECT count(*) FROM orders") == 1
