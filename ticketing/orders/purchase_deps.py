"""What the purchase, and the worker's payment reconciler that finishes purchases, work with."""

from __future__ import annotations

from dataclasses import dataclass

from stagedoor.bus import BusEmitter
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.holds.store import HoldStore
from ticketing.metrics import TicketingMetrics
from ticketing.orders.idempotency import IdempotencyStore
from ticketing.orders.sold_out import SoldOutWatch
from ticketing.orders.store import OrderStore
from ticketing.payments.charging import Payments
from ticketing.payments.records import PaymentRecords
from ticketing.payments.refunding import Refunder


@dataclass(frozen=True)
class PurchaseDeps:
    holds: HoldStore
    orders: OrderStore
    payments: Payments
    idempotency: IdempotencyStore
    keyring: KeyRing
    metrics: TicketingMetrics
    settings: Settings
    admission: AdmissionHooks
    sold_out: SoldOutWatch
    records: PaymentRecords
    emitter: BusEmitter | None = None  # best-effort ShopperFinished (stagedoor/bus.py)

    @property
    def refunder(self) -> Refunder:
        return Refunder(self.payments, self.records, self.metrics, base_s=self.settings.refund_retry_base_s,
                        max_s=self.settings.refund_retry_max_s)
