"""Live sales of one event for its organizer: sold, orders, revenue and the funnel from the
dashboard counters (ticketing/sales/counters.py: kept by the worker's ``dashboard`` bus group,
so a poll reads one totals row plus at most ``buckets`` rows and never scans orders or tickets),
held and free from the Redis inventory (what can still be bought right now).

The counters trail the sales by the bus lag: ``counters_as_of`` says up to when every sale,
refund, failed payment, expired hold and check-in is counted (null: the counters are not kept:
no worker has started the ``dashboard`` group yet), ``counters_lag_seconds`` how long ago that is."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from stagedoor.auth import Principal
from stagedoor.formats import rfc3339
from stagedoor.policy import Action, Resource, authorize
from ticketing.holds.store import HoldStore
from ticketing.ids import EventNotFound
from ticketing.orders.store import OrderStore
from ticketing.sales.counters import Counts, GroupBacklog, SalesCounterStore, counters_freshness, net


class SalesQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bucket: Literal["minute", "hour", "day"] = "minute"
    buckets: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 60


class TierSales(msgspec.Struct, frozen=True, kw_only=True):
    tier: str
    capacity: int
    sold: int
    held: int
    free: int


class SalesPoint(Counts, frozen=True, kw_only=True):
    """What happened in one bucket (UTC): orders confirmed then and their revenue (refunds are in
    the bucket of the refund, not subtracted here), and the rest of the funnel."""
    at: str


class SalesFunnel(Counts, frozen=True, kw_only=True):
    """Since sales began: orders confirmed (refunded ones included) with their tickets and revenue,
    then refunds, failed payments, holds that expired unbought and tickets checked in."""


class SalesOut(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    status: str
    currency: str
    sold: int  # tickets of orders still confirmed
    held: int | None
    free: int | None
    orders: int  # orders still confirmed
    revenue: int  # of the orders still confirmed (minor units)
    inventory_loaded: bool
    tiers: list[TierSales]
    orders_over_time: list[SalesPoint]
    funnel: SalesFunnel
    counters_as_of: str | None  # every fact committed before this instant is counted
    counters_lag_seconds: float | None
    last_counted_at: str | None  # the newest fact counted for this event


async def event_sales(orders: OrderStore, holds: HoldStore, counters: SalesCounterStore, backlog: GroupBacklog,
                      principal: Principal, event_id: int, query: SalesQuery) -> SalesOut:
    organizer_id, currency, status = await orders.event_owner(event_id)
    # someone else's draft is hidden (404 as for a missing event); their public event is 403
    authorize(principal, Action.SALES_READ, Resource(organizer_id=organizer_id),
              hidden=EventNotFound(f"no event {event_id}") if status == "draft" else None)
    # Wall clock, not the hold clock: the counters' times are PostgreSQL commit times. Read before
    # the counters, and PostgreSQL before Redis (dashboard_counters "Freshness").
    checked_at = dt.datetime.now(dt.UTC)
    counted = await counters.event_counters(event_id, query.bucket, query.buckets)
    group_exists, backlog_since_ms = await backlog.oldest_unacked_ms()
    as_of = counters_freshness(counted, group_exists, backlog_since_ms, checked_at)
    counts = await holds.tier_counts(str(event_id))
    tiers = [TierSales(tier=code, capacity=c.capacity, sold=c.sold, held=c.held, free=c.free)
             for code, c in sorted((counts or {}).items())]
    sold, confirmed, revenue = net(counted.totals)
    return SalesOut(
        event_id=str(event_id), status=status, currency=currency.strip(), sold=sold,
        held=sum(t.held for t in tiers) if counts is not None else None,
        free=sum(t.free for t in tiers) if counts is not None else None,
        orders=confirmed, revenue=revenue, inventory_loaded=counts is not None, tiers=tiers,
        orders_over_time=[SalesPoint(at=rfc3339(b.at), **msgspec.structs.asdict(b.counts)) for b in counted.series],
        funnel=SalesFunnel(**msgspec.structs.asdict(counted.totals)),
        counters_as_of=rfc3339(as_of) if as_of is not None else None,
        counters_lag_seconds=round(max(0.0, (checked_at - as_of).total_seconds()), 3) if as_of is not None else None,
        last_counted_at=rfc3339(counted.last_event_at) if counted.last_event_at is not None else None,
    )
