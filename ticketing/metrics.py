"""Prometheus metrics of the ticketing service and its worker (prefix ``ticketing_``), on the app's
own registry; typed attributes, so handlers reach them through ``ticketing.appkeys.METRICS``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stagedoor.metrics import LATENCY_BUCKETS, BaseMetrics

HOLD_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
BREAKER_STATES = {"closed": 0, "half-opened": 1, "opened": 2}


class TicketingMetrics(BaseMetrics):
    def __init__(self, app_name: str = "ticketing") -> None:
        super().__init__(app_name)
        r = self.registry
        # holds and inventory
        self.holds_total = Counter(
            "ticketing_holds_total", "Hold requests by outcome (held, seat_unavailable, sold_out, active_hold, "
            "invalid, not_on_sale, admission_required, unavailable) and hold endings (released, expired)",
            ["outcome"], registry=r)
        self.hold_duration_seconds = Histogram(
            "ticketing_hold_duration_seconds", "Life of a hold from creation to release, expiry or sale, by ending",
            ["ending"], buckets=HOLD_DURATION_BUCKETS, registry=r)
        self.inventory_seats = Gauge(
            "ticketing_inventory_tickets", "Tickets (seats or general admission) per on-sale event by state "
            "(free, held, sold), from the Redis counters", ["event", "state"], registry=r)
        self.inventory_rebuilds_total = Counter(
            "ticketing_inventory_rebuilds_total", "Inventory rebuilds from PostgreSQL by reason", ["reason"],
            registry=r)
        self.holds_swept_total = Counter("ticketing_holds_swept_total", "Expired holds reclaimed by the sweeper",
                                         registry=r)
        # the waiting list after sold out (ticketing/waitlist/)
        self.waitlist_offers_total = Counter(
            "ticketing_waitlist_offers_total", "Waiting-list offers by what happened (made, accepted, bought, expired, "
            "void)", ["outcome"], registry=r)
        self.waitlist_joins_total = Counter(
            "ticketing_waitlist_joins_total", "Waiting-list join requests by outcome (joined, already_on_list, "
            "not_sold_out, left)", ["outcome"], registry=r)
        self.waitlist_back_on_sale_total = Counter(
            "ticketing_waitlist_back_on_sale_total", "Sold-out events put back on sale: tickets came back and "
            "nobody was waiting for them", registry=r)
        # purchases, payments, check-in
        self.purchases_total = Counter(
            "ticketing_purchases_total", "Purchase requests by result (confirmed, replayed, declined, expired, ...)",
            ["result"], registry=r)
        self.orders_confirmed_total = Counter("ticketing_orders_confirmed_total", "Orders committed", registry=r)
        self.payment_attempts_total = Counter(
            "ticketing_payment_attempts_total", "Gateway charge attempts by outcome (retries counted)", ["outcome"],
            registry=r)
        self.payment_latency_seconds = Histogram(
            "ticketing_payment_latency_seconds", "Time to a final charge answer, retries included, by outcome",
            ["outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.payment_breaker_state = Gauge(
            "ticketing_payment_breaker_state", "Payment circuit breaker: 0 closed, 1 half-open, 2 open", registry=r)
        self.refunds_total = Counter(
            "ticketing_refunds_total", "Refunds the gateway confirmed, by reason (a refused commit, a charge "
            "without an order, event_cancelled)", ["reason"], registry=r)
        self.refunds_failed_total = Counter(
            "ticketing_refunds_failed_total", "Refund attempts the gateway did not confirm, by reason (retried with "
            "backoff)", ["reason"], registry=r)
        self.refunds_owed = Gauge(
            "ticketing_refunds_owed", "Charges owed a refund the gateway has not confirmed yet (payments rows "
            "refunding or refund_failed), read by the worker's reconciler", registry=r)
        self.payments_reconciled_total = Counter(
            "ticketing_payments_reconciled_total", "Pending/unknown payments settled by the reconciler, by outcome "
            "(succeeded, completed, failed, cancelled, refunded, refund_failed, kept)", ["outcome"], registry=r)
        self.payment_webhooks_total = Counter(
            "ticketing_payment_webhooks_total", "Gateway webhooks received, by event type (\"unknown\" before the "
            "signature is verified) and outcome (stored, duplicate, ignored: a type not handled, "
            "bad_signature, bad_payload)", ["type", "outcome"], registry=r)
        self.payment_webhook_effects_total = Counter(
            "ticketing_payment_webhook_effects_total", "Stored gateway webhooks applied by the worker, by event "
            "type and effect (charge_recorded, reopened, failed, refund_confirmed, order_refunded, "
            "partially_refunded, flagged, refund_claimed, settled_already, unmatched, ignored)",
            ["type", "outcome"], registry=r)
        self.payment_gateway_missing_total = Counter(
            "ticketing_payment_gateway_missing_total", "Refunds, lookups or cancels of charges taken by a gateway "
            "this deployment cannot reach (switched away from it, its keys gone), by that gateway", ["gateway"],
            registry=r)
        self.payments_unrecorded_total = Counter(
            "ticketing_payments_unrecorded_total", "Charges the gateway sweep found at the gateway with no record of "
            "ours (refunded), by outcome (refunded, refund_failed)", ["outcome"], registry=r)
        self.payment_sweep_findings_total = Counter(
            "ticketing_payment_sweep_findings_total", "What the gateway sweep found and did, by finding "
            "(unrecorded, charge_recorded, reopened, refunded_outside, partially_refunded_outside, refund_missing, "
            "amount_mismatch, duplicate_charge)", ["finding"], registry=r)
        self.payment_sweep_listed_total = Counter(
            "ticketing_payment_sweep_listed_total", "Gateway payments the sweep listed and compared", registry=r)
        self.payment_sweep_last_success_seconds = Gauge(
            "ticketing_payment_sweep_last_success_seconds", "Unix time the gateway sweep last finished a window "
            "(everything the gateway made before its end is compared)", registry=r)
        self.payment_flags_total = Counter(
            "ticketing_payment_flags_total", "Charges flagged for a person, by kind (dispute, amount_mismatch)",
            ["kind"], registry=r)
        self.oversell_prevented_total = Counter(
            "ticketing_oversell_prevented_total",
            "Purchases refused by PostgreSQL after Redis said the seats were free (refunded)", registry=r)
        self.checkins_total = Counter("ticketing_checkins_total", "Check-in scans by result", ["result"], registry=r)


class AccountsMetrics:
    """The accounts counters, on the app's own registry (prefix ``ticketing_``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.token_grants_total = Counter(
            "ticketing_token_grants_total", "OAuth2 token requests by grant type and outcome (RFC 6749 error or ok)",
            ["grant", "outcome"], registry=registry)
        self.registrations_total = Counter(
            "ticketing_registrations_total", "Account registrations by outcome (ok or problem code)",
            ["outcome"], registry=registry)
