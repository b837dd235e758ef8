"""Payments: idempotent purchases charge once (sequential and racing duplicates), declined ->
402 with the hold kept, gateway errors retried then 502, an open breaker -> 503 fast."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stagedoor.clock import ManualClock
from stagedoor.web import DB
from tests.support.events import buy, hold_seats
from ticketing.payments.gateway import Charge, MockGateway


async def test_the_same_key_again_replays_the_same_response_and_charges_once(shop, make_event,
                                                                             create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1", "s2"])
    first = await buy(client, fan, hold["hold_id"], key="same")
    assert first.status == 201
    body = await first.read()
    for _ in range(3):
        again = await buy(client, fan, hold["hold_id"], key="same")
        assert again.status == 201 and await again.read() == body
    assert client.gateway.charge_count == 1 and client.gateway.calls == 1
    assert await client.app[DB].fetchval("SELECT count(*) FROM orders") == 1
    # same key, different request -> 422, nothing charged
    other = await buy(client, fan, hold["hold_id"], key="same", email="other@example.test")
    assert other.status == 422 and (await other.json())["type"] == "/problems/idempotency-key-reused"
    # a new key for a bought hold is a conflict, not a second order
    resp = await buy(client, fan, hold["hold_id"], key="new")
    assert resp.status == 409 and (await resp.json())["type"] == "/problems/hold-already-sold"
    assert client.gateway.charge_count == 1


async def test_racing_duplicates_charge_once(shop, make_event, create_user) -> None:
    client = await shop(payment_mock_slow_ms=300)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    responses = await asyncio.gather(*(buy(client, fan, hold["hold_id"], key="race", token="tok_slow")
                                       for _ in range(8)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, statuses
    for r in responses:
        if r.status == 409:
            assert r.headers["Retry-After"] == "1"
            assert (await r.json())["type"] == "/problems/purchase-in-progress"
    assert client.gateway.charge_count == 1
    # after the winner finished, a retry gets the winner's answer
    winner = next(r for r in responses if r.status == 201)
    again = await buy(client, fan, hold["hold_id"], key="race", token="tok_slow")
    assert again.status == 201 and await again.read() == await winner.read()
    assert client.gateway.charge_count == 1
    assert await client.app[DB].fetchval("SELECT count(*) FROM tickets") == 1


async def test_racing_purchases_of_one_hold_with_different_keys_sell_it_once(shop, make_event,
                                                                             create_user) -> None:
    client = await shop(payment_mock_latency_ms=50)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    responses = await asyncio.gather(*(buy(client, fan, hold["hold_id"], key=f"k{i}") for i in range(6)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) == 1 and set(statuses) <= {201, 409}, statuses
    # every extra charge was refunded: one net charge
    assert client.gateway.charge_count - len(client.gateway.refunds) == 1
    assert await client.app[DB].fetchval("SELECT count(*) FROM tickets") == 1


async def test_a_declined_payment_is_402_and_the_hold_stays(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan, rival = await create_user(), await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    resp = await buy(client, fan, hold["hold_id"], key="a", token="tok_declined")
    assert resp.status == 402 and (await resp.json())["type"] == "/problems/payment-declined"
    got = await (await client.get(f"/api/holds/{hold['hold_id']}", headers=fan.headers)).json()
    assert got["state"] in ("held", "locked")
    blocked = await client.post(f"/api/events/{event['id']}/holds", json={"seats": ["s1"]}, headers=rival.headers)
    assert blocked.status == 409
    assert client.gateway.charge_count == 0
    # the same key may be retried with another card (a failure is not recorded)
    assert (await buy(client, fan, hold["hold_id"], key="a")).status == 201
    assert client.gateway.charge_count == 1


async def test_gateway_errors_are_retried_with_backoff_then_502(shop, make_event, create_user) -> None:
    client = await shop(payment_retry_attempts=3, payment_retry_base_ms=1, payment_breaker_failures=10)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    resp = await buy(client, fan, hold["hold_id"], token="tok_error")
    assert resp.status == 502 and (await resp.json())["type"] == "/problems/payment-gateway-error"
    assert client.gateway.calls == 3 and client.gateway.charge_count == 0
    assert (await buy(client, fan, hold["hold_id"])).status == 201


class FlakyGateway(MockGateway):
    """Fails the first ``failures`` calls, then works (a transient outage)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def charge(self, **kw: Any) -> Charge:
        if self.failures > 0:
            self.failures -= 1
            kw["token"] = "tok_error"
        return await super().charge(**kw)


async def test_a_transient_gateway_error_is_retried_and_charges_once(shop, make_event, create_user) -> None:
    client = await shop(gateway=FlakyGateway(failures=2), payment_retry_attempts=3, payment_retry_base_ms=1)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    assert (await buy(client, fan, hold["hold_id"])).status == 201
    assert client.gateway.calls == 3 and client.gateway.charge_count == 1


async def test_an_open_breaker_fails_fast_with_503_and_retry_after(shop, make_event, create_user) -> None:
    client = await shop(payment_retry_attempts=2, payment_retry_base_ms=1, payment_breaker_failures=2,
                        payment_breaker_reset_s=60)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    assert (await buy(client, fan, hold["hold_id"], key="a", token="tok_error")).status == 502
    calls = client.gateway.calls
    start = time.perf_counter()
    resp = await buy(client, fan, hold["hold_id"], key="b", token="tok_ok")
    elapsed = time.perf_counter() - start
    assert resp.status == 503, await resp.text()
    assert (await resp.json())["type"] == "/problems/payment-gateway-unavailable"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert client.gateway.calls == calls  # the gateway was not even asked
    assert elapsed < 2.0  # generous: "fast" means no gateway wait, no retries
    metrics = await (await client.get("/metrics")).text()
    assert "ticketing_payment_breaker_state 2.0" in metrics


async def test_the_breaker_closes_again_after_its_reset_time(shop, make_event, create_user) -> None:
    client = await shop(payment_retry_attempts=1, payment_breaker_failures=1, payment_breaker_reset_s=0.2)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    assert (await buy(client, fan, hold["hold_id"], key="a", token="tok_error")).status == 502
    assert (await buy(client, fan, hold["hold_id"], key="b")).status == 503
    await asyncio.sleep(0.5)
    assert (await buy(client, fan, hold["hold_id"], key="c")).status == 201


async def test_a_slow_gateway_times_out_per_attempt(shop, make_event, create_user,
                                                    manual_clock: ManualClock) -> None:
    client = await shop(payment_mock_slow_ms=5_000, payment_attempt_timeout_s=0.1, payment_retry_attempts=2,
                        payment_retry_base_ms=1)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    start = time.perf_counter()
    resp = await buy(client, fan, hold["hold_id"], token="tok_slow")
    assert resp.status == 502
    assert time.perf_counter() - start < 3.0


async def test_a_failed_commit_after_the_charge_refunds_and_answers_503(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    db = client.app[DB]
    await db.execute("ALTER TABLE idempotency_keys RENAME TO idempotency_keys_away")
    try:
        resp = await buy(client, fan, hold["hold_id"], key="a")
        assert resp.status == 503, await resp.text()
        assert client.gateway.charge_count == 1 and len(client.gateway.refunds) == 1
        assert await db.fetchval("SELECT count(*) FROM orders") == 0
    finally:
        await db.execute("ALTER TABLE idempotency_keys_away RENAME TO idempotency_keys")
    # nothing was recorded for the key: the same key buys now (a new charge, the refunded one stays refunded)
    resp = await buy(client, fan, hold["hold_id"], key="a")
    assert resp.status == 201, await resp.text()
    assert client.gateway.charge_count - len(client.gateway.refunds) == 1


async def test_declined_cards_never_open_the_breaker(shop, make_event, create_user) -> None:
    client = await shop(payment_retry_attempts=1, payment_breaker_failures=2, payment_breaker_reset_s=60)
    event = await make_event(client)
    fans = [await create_user() for _ in range(5)]
    holds = [await hold_seats(client, fan, event["id"], [f"s{i + 1}"]) for i, fan in enumerate(fans)]
    for fan, hold in zip(fans, holds, strict=True):
        resp = await buy(client, fan, hold["hold_id"], key="d", token="tok_declined")
        assert resp.status == 402, await resp.text()
    # five declines with a breaker threshold of two: the next good card still goes through
    resp = await buy(client, fans[0], holds[0]["hold_id"], key="ok")
    assert resp.status == 201, await resp.text()
    metrics = await (await client.get("/metrics")).text()
    assert "ticketing_payment_breaker_state 0.0" in metrics


async def test_a_declined_card_gives_the_payment_window_back(shop, make_event, create_user) -> None:
    """After a decline the hold keeps its own expiry (the fan may retry with another card) but no
    longer the payment window: a fan who walks away does not block the seats for all of it."""
    client = await shop(payment_window_s=600)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    resp = await buy(client, fan, hold["hold_id"], key="a", token="tok_declined")
    assert resp.status == 402
    got = await (await client.get(f"/api/holds/{hold['hold_id']}", headers=fan.headers)).json()
    assert got["state"] == "held" and got["expires_at"] == hold["expires_at"], (got, hold)
    assert (await buy(client, fan, hold["hold_id"], key="b")).status == 201
