"""Cancelling an event refunds its orders once (ticketing/orders/refunds.py), even when run twice
or when the gateway fails for some of them (those are retried by the next run)."""

from __future__ import annotations

from stagedoor.web import DB
from tests.support.events import buy, hold_seats
from ticketing.appkeys import ORDERS, PURCHASES
from ticketing.orders.refunds import refund_event_orders
from ticketing.payments.gateway import Charge, GatewayFailure, MockGateway


class RefundOutage(MockGateway):
    def __init__(self) -> None:
        super().__init__()
        self.refunds_down = False

    async def refund(self, charge: Charge, *, idempotency_key: str, amount: int | None = None) -> str:
        if self.refunds_down:
            raise GatewayFailure("refunds down")
        return await super().refund(charge, idempotency_key=idempotency_key, amount=amount)


async def test_a_cancelled_event_is_refunded_once_and_its_tickets_stop_checking_in(shop, make_event,
                                                                                  create_user) -> None:
    gateway = RefundOutage()
    client = await shop(gateway=gateway, payment_retry_attempts=1, payment_retry_base_ms=1)
    event = await make_event(client)
    orders = []
    for seats in (["s1"], ["s2", "s3"]):
        fan = await create_user()
        hold = await hold_seats(client, fan, event["id"], seats)
        resp = await buy(client, fan, hold["hold_id"])
        assert resp.status == 201
        orders.append(await resp.json())
    organizer = event["_organizer"]
    assert (await client.delete(f"/api/events/{event['id']}", headers=organizer.headers)).status in (200, 204)

    app = client.app
    gateway.refunds_down = True
    run = await refund_event_orders(app[ORDERS], app[PURCHASES].payments, int(event["id"]))
    assert (run.refunded, run.failed) == (0, 2)
    gateway.refunds_down = False
    run = await refund_event_orders(app[ORDERS], app[PURCHASES].payments, int(event["id"]))
    assert (run.refunded, run.failed) == (2, 0)
    again = await refund_event_orders(app[ORDERS], app[PURCHASES].payments, int(event["id"]))
    assert (again.refunded, again.failed) == (0, 0)

    assert len(gateway.refunds) == 2
    db = app[DB]
    assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'refunded'") == 2
    assert await db.fetchval("SELECT count(*) FROM payments WHERE status = 'refunded' AND refund_id IS NOT NULL") == 2
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'OrderRefunded'") == 2
    code = orders[0]["tickets"][0]["code"]
    resp = await client.post("/api/checkin", json={"code": code}, headers=organizer.headers)
    assert resp.status == 409
    got = await client.get(f"/api/orders/{orders[0]['order_id']}", headers=organizer.headers)
    assert (await got.json())["status"] == "refunded"
