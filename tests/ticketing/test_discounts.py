"""Discount codes: created by the event's organizer, percent or fixed, applied to the charge,
usage-limited (the CHECK decides the last use), valid only inside their window."""

from __future__ import annotations

import asyncio

from stagedoor.clock import ManualClock
from stagedoor.web import DB
from tests.support.events import buy, hold_seats


async def _discount(client, event, **body):
    payload = {"code": "SAVE10", "kind": "percent", "value": 10, "max_uses": 5, **body}
    return await client.post(f"/api/events/{event['id']}/discounts", json=payload,
                             headers=event["_organizer"].headers)


async def test_a_percentage_code_lowers_the_charge(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    resp = await _discount(client, event, code="save10")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["code"] == "SAVE10"
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1", "s11"])  # 5000 + 3000
    resp = await buy(client, fan, hold["hold_id"], discount_code="Save10")
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert (order["subtotal"], order["discount"], order["total"]) == (8000, 800, 7200)
    assert next(iter(client.gateway.charges.values())).amount == 7200
    assert await client.app[DB].fetchval("SELECT used FROM discount_codes") == 1


async def test_a_fixed_code_never_goes_below_zero_and_a_free_order_skips_the_gateway(shop, make_event,
                                                                                     create_user) -> None:
    client = await shop()
    event = await make_event(client)
    assert (await _discount(client, event, code="FREE", kind="fixed", value=10**6)).status == 201
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    resp = await buy(client, fan, hold["hold_id"], discount_code="FREE")
    assert resp.status == 201
    assert (await resp.json())["total"] == 0
    assert client.gateway.calls == 0


async def test_a_used_up_code_is_refused_and_racing_buyers_get_it_once(shop, make_event, create_user) -> None:
    client = await shop(payment_mock_latency_ms=30)
    event = await make_event(client)
    assert (await _discount(client, event, code="ONCE", max_uses=1)).status == 201
    fans = [await create_user() for _ in range(4)]
    holds = [await hold_seats(client, f, event["id"], [f"s{i + 1}"]) for i, f in enumerate(fans)]
    responses = await asyncio.gather(*(buy(client, f, h["hold_id"], discount_code="ONCE")
                                       for f, h in zip(fans, holds, strict=True)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 409, 422}
    assert await client.app[DB].fetchval("SELECT used FROM discount_codes") == 1
    # losers who were charged got refunded
    assert client.gateway.charge_count - len(client.gateway.refunds) == 1
    loser = next(i for i, r in enumerate(responses) if r.status != 201)
    late = await buy(client, fans[loser], holds[loser]["hold_id"], key="late", discount_code="ONCE")
    assert late.status == 422 and (await late.json())["type"] == "/problems/discount-not-valid"


async def test_codes_outside_their_window_or_unknown_are_422(shop, make_event, create_user,
                                                             manual_clock: ManualClock) -> None:
    client = await shop()
    event = await make_event(client)
    # manual_clock is in November 2023
    assert (await _discount(client, event, code="LATER", valid_from="2030-01-01T00:00:00Z")).status == 201
    assert (await _discount(client, event, code="OVER", valid_until="2020-01-01T00:00:00Z")).status == 201
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    for code, kind in (("LATER", "discount-not-valid"), ("OVER", "discount-not-valid"),
                       ("NOPE", "discount-not-found")):
        resp = await buy(client, fan, hold["hold_id"], key=code, discount_code=code)
        assert resp.status == 422 and (await resp.json())["type"] == f"/problems/{kind}"
    assert client.gateway.calls == 0


async def test_only_the_organizer_creates_codes_and_bad_codes_are_4xx(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    other = await create_user(roles=["organizer"])
    resp = await client.post(f"/api/events/{event['id']}/discounts",
                             json={"code": "X", "kind": "fixed", "value": 1, "max_uses": 1}, headers=other.headers)
    assert resp.status == 403
    assert (await _discount(client, event)).status == 201
    assert (await _discount(client, event)).status == 409  # same name
    for bad in ({"value": 101}, {"value": 0}, {"kind": "bogus"}, {"max_uses": 0}, {"code": "has space"},
                {"valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"},
                {"valid_from": "2030-01-01T00:00:00"}, {"extra": True}):
        resp = await _discount(client, event, **{"code": "OTHER", **bad})
        assert resp.status == 422, bad
    assert (await client.post("/api/events/999999/discounts",
                              json={"code": "X", "kind": "fixed", "value": 1, "max_uses": 1},
                              headers=other.headers)).status == 404
