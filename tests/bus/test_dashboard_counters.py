"""The organizer dashboard counters (ticketing/sales/counters.py, bus group ``dashboard``):
exact after purchases, a failed payment, an expired hold, a check-in and refunds once the relay
and the consumer ran; redeliveries and republished rows counted once; the one-time backfill
right whatever was relayed or consumed before it; the sales endpoint answering from the
counters (and saying how fresh they are), never from the orders.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import asyncpg

from stagedoor.bus import OutboxRelay, StreamConsumer, stream_fields
from stagedoor.redis_keys import RedisKeys
from stagedoor.web import KEYS, REDIS
from tests.support.bus import count_sales, drain, stream_envelopes
from tests.support.events import buy, hold_seats
from ticketing.appkeys import CLOCK, INVENTORY
from ticketing.catalog.hold_sweeper import sweep_event
from ticketing.consumers import CONSUMER_FACTORIES
from ticketing.sales.counters import (
    COUNTED_TYPES,
    GROUP,
    SERIES,
    TOTALS,
    DashboardCounters,
    SalesCounterStore,
    backfill_counters,
)
from ticketing.worker import create_worker_app

# What the sales endpoint computed before the counters: a scan of the event's orders and tickets.
# The tests hold the counters to it.
TRUTH = """
SELECT count(*) FILTER (WHERE o.status = 'confirmed') AS orders,
       coalesce(sum(o.total) FILTER (WHERE o.status = 'confirmed'), 0) AS revenue,
       (SELECT count(*) FROM tickets t JOIN orders o2 ON o2.id = t.order_id
        WHERE t.event_id = $1 AND o2.status = 'confirmed') AS sold,
       count(*) AS all_orders, coalesce(sum(o.total), 0) AS all_revenue,
       (SELECT count(*) FROM tickets t WHERE t.event_id = $1) AS all_tickets,
       (SELECT count(*) FROM tickets t WHERE t.event_id = $1 AND t.checked_in_at IS NOT NULL) AS checkins
FROM orders o WHERE o.event_id = $1
"""


async def sales_of(client: Any, event: dict[str, Any], query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/api/events/{event['id']}/sales{query}", headers=event["_organizer"].headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def assert_matches_the_orders(pool: asyncpg.Pool, sales: dict[str, Any]) -> None:
    truth = await pool.fetchrow(TRUTH, int(sales["event_id"]))
    assert (sales["orders"], sales["revenue"], sales["sold"]) == (truth["orders"], truth["revenue"], truth["sold"])
    funnel = sales["funnel"]
    assert (funnel["orders"], funnel["revenue"], funnel["tickets"], funnel["checkins"]) == (
        truth["all_orders"], truth["all_revenue"], truth["all_tickets"], truth["checkins"])


async def purchase(client: Any, user: Any, event_id: str, seats: list[str], key: str = "k1") -> dict[str, Any]:
    hold = await hold_seats(client, user, event_id, seats)
    resp = await buy(client, user, hold["hold_id"], key=key)
    assert resp.status == 201, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def test_counters_are_exact_after_sales_a_failed_payment_an_expired_hold_a_check_in_and_refunds(
        shop: Any, make_event: Any, create_user: Any, pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys,
        make_relay: Any, make_consumer: Any, manual_clock: Any) -> None:
    client = await shop()
    app = client.server.app
    event = await make_event(client)  # 100 seats: A at 5000 (s1-s10, ...), B at 3000 (s11-s20, ...)
    organizer = event["_organizer"]
    assert await backfill_counters(pool) == 0  # the worker's first start, on an empty outbox

    first = await purchase(client, await create_user(), event["id"], ["s1", "s11"])  # 8000, 2 tickets
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s2"])
    declined = await buy(client, fan, hold["hold_id"], key="k-declined", token="tok_declined")
    assert declined.status == 402, await declined.text()
    assert (await buy(client, fan, hold["hold_id"], key="k-ok")).status == 201  # 5000, 1 ticket
    resp = await client.post("/api/checkin", json={"code": first["tickets"][0]["code"]}, headers=organizer.headers)
    assert resp.status == 200, await resp.text()
    await hold_seats(client, await create_user(), event["id"], ["s3", "s4"])
    manual_clock.advance(3600 * 1000)
    assert await sweep_event(app[INVENTORY], event["id"], manual_clock.now_ms(), 3600 * 1000) == 1

    relay: OutboxRelay = make_relay()
    handler = CONSUMER_FACTORIES["dashboard"](app)  # what the worker runs
    assert isinstance(handler, DashboardCounters)
    dashboard: StreamConsumer = make_consumer(GROUP, handler)
    await dashboard.ensure_group()
    while await relay.tick():
        pass
    assert await drain(dashboard) == 5  # 2 OrderConfirmed, PaymentFailed, TicketCheckedIn, BookingExpired

    sales = await sales_of(client, event)
    assert (sales["sold"], sales["orders"], sales["revenue"]) == (3, 2, 13000)
    assert sales["funnel"] == {"orders": 2, "tickets": 3, "revenue": 13000, "refunds": 0, "refunded_tickets": 0,
                               "refunded_amount": 0, "payment_failures": 1, "holds_expired": 1, "checkins": 1}
    await assert_matches_the_orders(pool, sales)
    assert sum(p["orders"] for p in sales["orders_over_time"]) == 2
    assert sum(p["payment_failures"] for p in sales["orders_over_time"]) == 1

    # The event is cancelled: the refunds group refunds both orders. The refunds are counted in
    # the bucket they happen in (moved two hours on here), not taken off the sales' bucket.
    resp = await client.delete(f"/api/events/{event['id']}", headers=organizer.headers)
    assert resp.status == 200, await resp.text()
    while await relay.tick():
        pass
    refunds = make_consumer("refunds", CONSUMER_FACTORIES["refunds"](app))
    await refunds.ensure_group()
    assert await drain(refunds) == 1
    assert await pool.execute("UPDATE outbox SET created_at = created_at + interval '2 hours' "
                              "WHERE event_type = 'OrderRefunded' AND published_at IS NULL") == "UPDATE 2"
    while await relay.tick():
        pass
    assert await drain(dashboard) == 2

    sales = await sales_of(client, event, "?bucket=hour&buckets=24")
    assert (sales["sold"], sales["orders"], sales["revenue"]) == (0, 0, 0)
    assert sales["funnel"] == {"orders": 2, "tickets": 3, "revenue": 13000, "refunds": 2, "refunded_tickets": 3,
                               "refunded_amount": 13000, "payment_failures": 1, "holds_expired": 1, "checkins": 1}
    await assert_matches_the_orders(pool, sales)
    points = sales["orders_over_time"]
    sold_in = [p for p in points if p["orders"]]
    refunded_in = [p for p in points if p["refunds"]]
    assert sum(p["orders"] for p in sold_in) == 2 and sum(p["revenue"] for p in sold_in) == 13000
    assert sum(p["refunds"] for p in refunded_in) == 2 and sum(p["refunded_amount"] for p in refunded_in) == 13000
    assert not any(p["refunds"] for p in sold_in) and not any(p["orders"] for p in refunded_in)
    first_refund = min(dt.datetime.fromisoformat(p["at"]) for p in refunded_in)
    assert first_refund - max(dt.datetime.fromisoformat(p["at"]) for p in sold_in) >= dt.timedelta(hours=1)
    rows = await pool.fetch("SELECT grain, count(*) AS n FROM sales_counters WHERE event_id = $1 GROUP BY grain",
                            int(event["id"]))
    assert {r["grain"]: r["n"] for r in rows}["total"] == 1


async def test_a_redelivered_or_republished_event_is_counted_once(
        shop: Any, make_event: Any, create_user: Any, pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys,
        make_relay: Any, make_consumer: Any) -> None:
    client = await shop()
    event = await make_event(client)
    await backfill_counters(pool)
    await purchase(client, await create_user(), event["id"], ["s1", "s2"])
    await purchase(client, await create_user(), event["id"], ["s3"])
    relay: OutboxRelay = make_relay()
    while await relay.tick():
        pass
    handler = DashboardCounters(pool)
    dashboard = make_consumer(GROUP, handler)
    assert await drain(dashboard) == 2
    before = await sales_of(client, event)
    assert (before["sold"], before["orders"], before["revenue"]) == (3, 2, 15000)

    confirmed = [env for _, env in await stream_envelopes(redis_client, keys) if env.event_type == "OrderConfirmed"]
    assert len(confirmed) == 2
    # Delivered again to the handler (a consumer that died after the commit, before its XACK).
    assert [await handler.count(env) for env in confirmed] == [False, False]
    # Republished (a relay crash between XADD and the stamp) after the group's Redis dedupe expired.
    await redis_client.delete(*[keys.bus_seen(GROUP, env.event_id) for env in confirmed])
    for env in confirmed:
        await redis_client.xadd(keys.bus_stream(), stream_fields(env))
    assert await drain(dashboard) == 2  # handled (acknowledged) ...
    # ... and two consumers racing on one delivery: one counts it.
    fresh = confirmed[0]
    await pool.execute("DELETE FROM bus_applied WHERE consumer_group = $1 AND event_id = $2::uuid", GROUP,
                       fresh.event_id)
    at = dt.datetime.fromtimestamp(fresh.created_at_ms / 1000, dt.UTC)
    assert await pool.execute(  # as if that order had never been counted
        "UPDATE sales_counters SET orders = orders - 1, tickets = tickets - 2, revenue = revenue - 10000 "
        "WHERE event_id = $1 AND (grain = 'total' OR bucket = date_trunc(grain, $2::timestamptz, 'UTC'))",
        int(event["id"]), at) == "UPDATE 4"
    outcomes = await asyncio.gather(*(DashboardCounters(pool).count(fresh) for _ in range(4)))
    assert sorted(outcomes) == [False, False, False, True]

    after = await sales_of(client, event)
    assert after["funnel"] == before["funnel"]
    assert after["orders_over_time"] == before["orders_over_time"]
    await assert_matches_the_orders(pool, after)


async def test_the_backfill_counts_what_came_before_the_group_once_whatever_was_relayed_or_consumed(
        shop: Any, make_event: Any, create_user: Any, pool: asyncpg.Pool, make_relay: Any,
        make_consumer: Any) -> None:
    """An existing database: A consumed before the backfill, B relayed but not consumed, C not even
    relayed, D after the backfill, E while the backfill and the consumer run at once."""
    client = await shop()
    event = await make_event(client)
    organizer = event["_organizer"]
    relay: OutboxRelay = make_relay()
    dashboard = make_consumer(GROUP, DashboardCounters(pool))

    async def relay_all() -> None:
        while await relay.tick():
            pass

    a = await purchase(client, await create_user(), event["id"], ["s1", "s2"])
    await relay_all()
    assert await drain(dashboard) == 1
    b = await purchase(client, await create_user(), event["id"], ["s3"])
    resp = await client.post("/api/checkin", json={"code": a["tickets"][0]["code"]}, headers=organizer.headers)
    assert resp.status == 200, await resp.text()
    await relay_all()
    c = await purchase(client, await create_user(), event["id"], ["s11", "s12", "s13"])
    sales = await sales_of(client, event)
    assert sales["orders"] == 1 and sales["counters_as_of"] is None  # no backfill yet: not maintained

    assert await backfill_counters(pool) == 3  # B, A's check-in and C
    assert await backfill_counters(pool) is None  # once per database
    sales = await sales_of(client, event)
    assert (sales["orders"], sales["sold"], sales["funnel"]["checkins"]) == (3, 6, 1)
    assert sales["counters_as_of"] is not None

    d = await purchase(client, await create_user(), event["id"], ["s4"])
    await relay_all()
    assert await drain(dashboard) == 4  # B, the check-in, C (already counted: skipped) and D
    sales = await sales_of(client, event)
    assert (sales["orders"], sales["sold"], sales["revenue"]) == (4, 7, 5000 * 4 + 3000 * 3)
    await assert_matches_the_orders(pool, sales)

    # The race itself: a fresh database state for the backfill (its marker and the group's marks
    # gone, counters zeroed) while the consumer handles the same events concurrently.
    e = await purchase(client, await create_user(), event["id"], ["s5"])
    await relay_all()
    await pool.execute("DELETE FROM sales_counters_backfill")
    await pool.execute("DELETE FROM bus_applied WHERE consumer_group = $1", GROUP)
    await pool.execute("DELETE FROM sales_counters")
    replay = make_consumer(GROUP + "_replay", DashboardCounters(pool))  # same handler group, new stream group
    counted_by_backfill, counted_by_consumer = await asyncio.gather(backfill_counters(pool), drain(replay))
    assert counted_by_backfill is not None and counted_by_consumer == 6
    sales = await sales_of(client, event)
    assert (sales["orders"], sales["sold"], sales["revenue"]) == (5, 8, 5000 * 5 + 3000 * 3)
    await assert_matches_the_orders(pool, sales)
    del b, c, d, e


async def test_the_sales_endpoint_answers_from_the_counters_and_says_how_fresh_they_are(
        shop: Any, make_event: Any, create_user: Any, pool: asyncpg.Pool) -> None:
    client = await shop()
    app = client.server.app
    event = await make_event(client)
    await purchase(client, await create_user(), event["id"], ["s1"])
    sales = await sales_of(client, event)
    # A committed order is not in the figures until the worker counted it.
    assert (sales["sold"], sales["orders"], sales["revenue"]) == (0, 0, 0)
    assert sales["counters_as_of"] is None and sales["counters_lag_seconds"] is None  # no dashboard group yet

    assert await count_sales(app) == 1
    sales = await sales_of(client, event)
    assert (sales["sold"], sales["orders"], sales["revenue"]) == (1, 1, 5000)
    first_counted = dt.datetime.fromisoformat(sales["last_counted_at"])
    assert dt.datetime.fromisoformat(sales["counters_as_of"]) > first_counted  # nothing waiting: as of now

    # A sale the relay has not published yet, then one the group has not consumed yet: the
    # figures stay put and the freshness points at the sale.
    await purchase(client, await create_user(), event["id"], ["s2"])
    committed = await pool.fetchval("SELECT max(created_at) FROM orders WHERE event_id = $1", int(event["id"]))
    await asyncio.sleep(0.2)
    sales = await sales_of(client, event)
    assert sales["orders"] == 1
    assert dt.datetime.fromisoformat(sales["counters_as_of"]) <= committed
    assert sales["counters_lag_seconds"] >= 0.2
    relay = OutboxRelay(pool, app[REDIS], app[KEYS])
    while await relay.tick():
        pass
    sales = await sales_of(client, event)
    assert sales["orders"] == 1
    assert dt.datetime.fromisoformat(sales["counters_as_of"]) <= committed
    await count_sales(app)
    sales = await sales_of(client, event)
    assert sales["orders"] == 2 and dt.datetime.fromisoformat(sales["counters_as_of"]) > committed
    await assert_matches_the_orders(pool, sales)


async def test_the_worker_backfills_at_start_then_counts_in_the_background(
        shop: Any, make_event: Any, create_user: Any, pool: asyncpg.Pool, aiohttp_client: Any, settings: Any,
        keyring: Any, manual_clock: Any) -> None:
    client = await shop()
    event = await make_event(client)
    await purchase(client, await create_user(), event["id"], ["s1", "s2"])  # before any worker ran
    worker_app = create_worker_app(settings, keyring)
    worker_app[CLOCK] = manual_clock  # the shop's clock: the worker's hold sweeper must not expire its holds
    await aiohttp_client(worker_app)
    for _ in range(200):  # the backfill runs in the background at start-up
        if await pool.fetchval("SELECT counted FROM sales_counters_backfill") is not None:
            break
        await asyncio.sleep(0.05)
    # A was counted once, by the backfill or by the consumer if the relay and it came first.
    assert await pool.fetchval("SELECT counted FROM sales_counters_backfill") in (0, 1)
    await purchase(client, await create_user(), event["id"], ["s3"])
    sales: dict[str, Any] = {}
    for _ in range(300):  # the relay's and the consumer's next rounds: usually well under a second
        sales = await sales_of(client, event)
        if sales["orders"] == 2 and sales["counters_lag_seconds"] is not None and sales["counters_lag_seconds"] < 1:
            break
        await asyncio.sleep(0.05)
    assert (sales["sold"], sales["orders"], sales["revenue"]) == (3, 2, 15000)
    await assert_matches_the_orders(pool, sales)
    assert await pool.fetchval("SELECT count(*) FROM bus_applied WHERE consumer_group = $1", GROUP) == 2


def _relations(plan: Any) -> set[str]:
    found = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _relations(child)
    return found


async def test_the_sales_queries_read_only_the_counters_not_the_orders(pool: asyncpg.Pool) -> None:
    plans = [await pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
             for sql, args in ((TOTALS, (1,)), (SERIES, (1, "minute", 60)))]
    touched = set().union(*(_relations(_json(p)[0]["Plan"]) for p in plans))
    assert touched <= {"sales_counters", "sales_counters_backfill", "outbox"}, touched
    assert not touched & {"orders", "tickets", "payments"}
    assert set(COUNTED_TYPES) == set(DashboardCounters.event_types)
    store = SalesCounterStore(pool)
    empty = await store.event_counters(1, "day", 5)
    assert empty.series == [] and empty.totals.orders == 0 and empty.last_event_at is None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
