"""Prometheus metrics of the ticketing service (prefix ``ticketing_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stagedoor.metrics import LATENCY_BUCKETS, BaseMetrics


class TicketingMetrics(BaseMetrics):
    def __init__(self, app_name: str = "ticketing") -> None:
        super().__init__(app_name)
        add_hold_metrics(self)
        add_purchase_metrics(self)


# ---------------------------------------------------------------- holds and inventory
HOLD_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def add_hold_metrics(m: TicketingMetrics) -> None:
    r = m.registry
    m.holds_total = Counter(
        "ticketing_holds_total", "Hold requests by outcome (held, seat_unavailable, sold_out, active_hold, "
        "invalid, not_on_sale, admission_required, unavailable) and hold endings (released, expired)",
        ["outcome"], registry=r)
    m.hold_duration_seconds = Histogram(
        "ticketing_hold_duration_seconds", "Life of a hold from creation to release, expiry or sale, by ending",
        ["ending"], buckets=HOLD_DURATION_BUCKETS, registry=r)
    m.inventory_seats = Gauge(
        "ticketing_inventory_tickets", "Tickets (seats or general admission) per on-sale event by state "
        "(free, held, sold), from the Redis counters", ["event", "state"], registry=r)
    m.inventory_rebuilds_total = Counter(
        "ticketing_inventory_rebuilds_total", "Inventory rebuilds from PostgreSQL by reason", ["reason"], registry=r)
    m.holds_swept_total = Counter("ticketing_holds_swept_total", "Expired holds reclaimed by the sweeper",
                                  registry=r)


# ---------------------------------------------------------------- purchases, payments, check-in
BREAKER_STATES = {"closed": 0, "half-opened": 1, "opened": 2}


def add_purchase_metrics(m: TicketingMetrics) -> None:
    r = m.registry
    m.purchases_total = Counter(
        "ticketing_purchases_total", "Purchase requests by result (confirmed, replayed, declined, expired, ...)",
        ["result"], registry=r)
    m.orders_confirmed_total = Counter("ticketing_orders_confirmed_total", "Orders committed", registry=r)
    m.payment_attempts_total = Counter(
        "ticketing_payment_attempts_total", "Gateway charge attempts by outcome (retries counted)", ["outcome"],
        registry=r)
    m.payment_latency_seconds = Histogram(
        "ticketing_payment_latency_seconds", "Time to a final charge answer, retries included, by outcome",
        ["outcome"], buckets=LATENCY_BUCKETS, registry=r)
    m.payment_breaker_state = Gauge(
        "ticketing_payment_breaker_state", "Payment circuit breaker: 0 closed, 1 half-open, 2 open", registry=r)
    m.refunds_total = Counter("ticketing_refunds_total", "Charges refunded after a failed commit, by reason",
                              ["reason"], registry=r)
    m.oversell_prevented_total = Counter(
        "ticketing_oversell_prevented_total",
        "Purchases refused by PostgreSQL after Redis said the seats were free (refunded)", registry=r)
    m.checkins_total = Counter("ticketing_checkins_total", "Check-in scans by result", ["result"], registry=r)
