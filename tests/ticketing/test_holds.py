"""Seat holds over HTTP and through the HoldStore: all or nothing, one live hold per user,
expiry by the clock, release, lock-for-payment, confirm-sold, bad input -> 4xx and nothing held."""

from __future__ import annotations

from typing import Any

import pytest

from stagedoor.admission_tokens import mint_admission_token
from stagedoor.clock import ManualClock
from stagedoor.web import KEYS
from ticketing.appkeys import CLOCK, HOLDS, INVENTORY
from ticketing.holds.errors import HoldExpired, HoldSeatLost

PROBLEM = "application/problem+json"


async def _seat_states(client: Any, event_id: str) -> dict[str, str]:
    resp = await client.get(f"/api/events/{event_id}/seats")
    assert resp.status == 200
    return {s["id"]: s["state"] for s in (await resp.json())["seats"]}


async def _hold(client: Any, user: Any, event_id: str, body: dict[str, Any], **headers: str) -> Any:
    return await client.post(f"/api/events/{event_id}/holds", json=body, headers={**user.headers, **headers})


async def test_a_hold_takes_all_seats_and_reports_total_and_expiry(clocked_client, make_event, create_user,
                                                                   manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=60)
    fan = await create_user()
    resp = await _hold(client, fan, event["id"], {"seats": ["s1", "s2", "s11"]})
    assert resp.status == 201, await resp.text()
    hold = await resp.json()
    assert hold["seats"] == ["s1", "s2", "s11"]
    assert hold["total"] == 5000 + 5000 + 3000 and hold["currency"] == "EUR"
    assert hold["state"] == "held"
    assert hold["hold_id"].startswith(event["id"] + "-")
    states = await _seat_states(client, event["id"])
    assert [states[s] for s in ("s1", "s2", "s11", "s3")] == ["held", "held", "held", "free"]
    detail = await (await client.get(f"/api/events/{event['id']}")).json()
    assert {t["code"]: t["available"] for t in detail["tiers"]} == {"A": 48, "B": 49}
    got = await client.get(f"/api/holds/{hold['hold_id']}", headers=fan.headers)
    assert got.status == 200 and (await got.json())["seats"] == ["s1", "s2", "s11"]


async def test_a_conflicting_hold_gets_409_with_every_conflict_and_holds_nothing(clocked_client, make_event,
                                                                                 create_user) -> None:
    client = await clocked_client()
    event = await make_event(client)
    a, b = await create_user(), await create_user()
    assert (await _hold(client, a, event["id"], {"seats": ["s1", "s2"]})).status == 201
    resp = await _hold(client, b, event["id"], {"seats": ["s3", "s2", "s1"]})
    assert resp.status == 409 and resp.content_type == PROBLEM
    problem = await resp.json()
    assert problem["type"] == "/problems/seat-unavailable"
    assert sorted(problem["conflicts"]) == ["s1", "s2"]
    assert (await _seat_states(client, event["id"]))["s3"] == "free"
    # b has no hold, so b can hold s3 now
    assert (await _hold(client, b, event["id"], {"seats": ["s3"]})).status == 201


async def test_one_live_hold_per_user_per_event(clocked_client, make_event, create_user,
                                                manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=30)
    fan = await create_user()
    first = await (await _hold(client, fan, event["id"], {"seats": ["s1"]})).json()
    second = await _hold(client, fan, event["id"], {"seats": ["s2"]})
    assert second.status == 409
    assert (await second.json())["type"] == "/problems/active-hold-exists"
    # released -> allowed again
    assert (await client.delete(f"/api/holds/{first['hold_id']}", headers=fan.headers)).status == 204
    third = await (await _hold(client, fan, event["id"], {"seats": ["s2"]})).json()
    # expired -> allowed again
    manual_clock.advance(30_000)
    assert (await _hold(client, fan, event["id"], {"seats": ["s3"]})).status == 201
    assert third["hold_id"]


async def test_an_expired_hold_counts_as_free_without_any_sweep(clocked_client, make_event, create_user,
                                                                manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=10)
    a, b = await create_user(), await create_user()
    hold = await (await _hold(client, a, event["id"], {"seats": ["s1", "s2"]})).json()
    manual_clock.advance(9_999)
    assert (await _hold(client, b, event["id"], {"seats": ["s2"]})).status == 409
    manual_clock.advance(1)
    assert (await _seat_states(client, event["id"]))["s1"] == "free"
    got = await (await client.get(f"/api/holds/{hold['hold_id']}", headers=a.headers)).json()
    assert got["state"] == "expired"
    resp = await _hold(client, b, event["id"], {"seats": ["s2"]})
    assert resp.status == 201
    # a's expired hold can no longer be locked for payment
    store = client.app[HOLDS]
    old = await store.get_hold(hold["hold_id"])
    with pytest.raises((HoldExpired, HoldSeatLost)):
        await store.lock_for_payment(old, manual_clock.now_ms(), 60_000)


async def test_the_sweeper_reclaims_expired_holds_and_writes_booking_expired(clocked_client, make_event,
                                                                             create_user, db,
                                                                             manual_clock: ManualClock) -> None:
    from ticketing.catalog.hold_sweeper import sweep_event

    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=10)
    fan = await create_user()
    hold = await (await _hold(client, fan, event["id"], {"seats": ["s1", "s12"]})).json()
    manual_clock.advance(10_000)
    app = client.app
    swept = await sweep_event(app[INVENTORY], event["id"], manual_clock.now_ms(), retention_ms=3_600_000)
    assert swept == 1
    detail = await (await client.get(f"/api/events/{event['id']}")).json()
    assert {t["code"]: t["available"] for t in detail["tiers"]} == {"A": 50, "B": 50}
    rows = await db.fetch("SELECT event_type, aggregate_id, payload FROM outbox WHERE event_type = 'BookingExpired'")
    assert len(rows) == 1 and rows[0]["aggregate_id"] == hold["hold_id"]
    # idempotent: a second sweep finds nothing, writes nothing
    assert await sweep_event(app[INVENTORY], event["id"], manual_clock.now_ms(), retention_ms=3_600_000) == 0
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'BookingExpired'") == 1
    got = await (await client.get(f"/api/holds/{hold['hold_id']}", headers=fan.headers)).json()
    assert got["state"] == "expired"


async def test_lock_for_payment_outlives_the_original_expiry_then_confirm_marks_sold(
        clocked_client, make_event, create_user, manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=10)
    a, b = await create_user(), await create_user()
    created = await (await _hold(client, a, event["id"], {"seats": ["s5", "s6"]})).json()
    store = client.app[HOLDS]
    hold = await store.get_hold(created["hold_id"])
    manual_clock.advance(9_000)
    locked = await store.lock_for_payment(hold, manual_clock.now_ms(), 120_000)
    assert locked.state == "locked" and locked.expires_ms == manual_clock.now_ms() + 120_000
    manual_clock.advance(60_000)  # well past the original 10 s
    assert (await _hold(client, b, event["id"], {"seats": ["s6"]})).status == 409
    release = await client.delete(f"/api/holds/{hold.id}", headers=a.headers)
    assert release.status == 409 and (await release.json())["type"] == "/problems/hold-locked"
    assert await store.confirm_sold(locked, manual_clock.now_ms()) == []
    states = await _seat_states(client, event["id"])
    assert states["s5"] == states["s6"] == "sold"
    detail = await (await client.get(f"/api/events/{event['id']}")).json()
    assert {t["code"]: (t["available"], t["sold"]) for t in detail["tiers"]} == {"A": (48, 2), "B": (50, 0)}
    assert (await store.get_hold(hold.id)).state == "sold"
    # the buyer may hold again (the sold hold no longer blocks)
    assert (await _hold(client, a, event["id"], {"seats": ["s7"]})).status == 201


async def test_general_admission_holds_count_down_and_refuse_past_capacity(clocked_client, make_event, create_user,
                                                                           manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client, seat_map=None, hold_ttl_s=20, max_tickets_per_order=4,
                             tiers=[{"code": "GA", "name": "Floor", "price": 2500, "quantity": 5}])
    a, b, c = await create_user(), await create_user(), await create_user()
    resp = await _hold(client, a, event["id"], {"tier": "GA", "quantity": 4})
    assert resp.status == 201
    hold = await resp.json()
    assert hold["total"] == 10_000 and hold["quantity"] == 4 and hold["seats"] == []
    over = await _hold(client, b, event["id"], {"tier": "GA", "quantity": 2})
    assert over.status == 409 and (await over.json())["type"] == "/problems/tickets-unavailable"
    assert (await _hold(client, b, event["id"], {"tier": "GA", "quantity": 1})).status == 201
    manual_clock.advance(20_000)  # both expire; c gets them back without a sweep
    assert (await _hold(client, c, event["id"], {"tier": "GA", "quantity": 4})).status == 201
    detail = await (await client.get(f"/api/events/{event['id']}")).json()
    assert detail["tiers"][0]["available"] == 1


async def test_bad_hold_requests_are_4xx_and_hold_nothing(clocked_client, make_event, create_user) -> None:
    client = await clocked_client()
    event = await make_event(client, max_tickets_per_order=3)
    fan = await create_user()
    ev = event["id"]
    cases: list[tuple[Any, int, str | None]] = [
        ({"seats": ["s1", "s999"]}, 422, "/problems/unknown-seats"),
        ({"seats": ["s1", "s1"]}, 422, "/problems/invalid-hold-request"),
        ({"seats": ["s1", "s2", "s3", "s4"]}, 422, "/problems/over-order-limit"),
        ({"seats": []}, 422, None),
        ({"seats": ["x1' OR 1=1"]}, 422, "/problems/invalid-hold-request"),
        ({"seats": ["s1"] * 51}, 422, None),
        ({"tier": "A", "quantity": 0}, 422, None),
        ({"tier": "A", "quantity": -3}, 422, None),
        ({"tier": "A", "quantity": 10 ** 12}, 422, None),
        ({"tier": "A", "quantity": 1}, 422, "/problems/invalid-hold-request"),  # a seated tier
        ({"tier": "A"}, 422, "/problems/invalid-hold-request"),
        ({"seats": ["s1"], "tier": "A", "quantity": 1}, 422, "/problems/invalid-hold-request"),
        ({"seats": ["s1"], "bogus": 1}, 422, None),
        ({}, 422, "/problems/invalid-hold-request"),
    ]
    for body, status, ptype in cases:
        resp = await _hold(client, fan, ev, body)
        assert resp.status == status, (body, await resp.text())
        assert resp.content_type == PROBLEM
        if ptype:
            assert (await resp.json())["type"] == ptype, body
    raw = await client.post(f"/api/events/{ev}/holds", data=b"{not json", headers={
        **fan.headers, "Content-Type": "application/json"})
    assert raw.status == 400
    for bad_event in ("0", "abc", "99999999", "1" * 30):
        resp = await _hold(client, fan, bad_event, {"seats": ["s1"]})
        assert resp.status == 404, bad_event
    for bad_hold in ("nope", f"{ev}-" + "0" * 24, "../../x"):
        assert (await client.get(f"/api/holds/{bad_hold}", headers=fan.headers)).status == 404
    unauth = await client.post(f"/api/events/{ev}/holds", json={"seats": ["s1"]})
    assert unauth.status == 401
    assert set((await _seat_states(client, ev)).values()) == {"free"}


async def test_someone_elses_hold_is_409_to_inspect_or_release(clocked_client, make_event, create_user) -> None:
    client = await clocked_client()
    event = await make_event(client)
    a, b = await create_user(), await create_user()
    hold = await (await _hold(client, a, event["id"], {"seats": ["s1"]})).json()
    assert (await client.get(f"/api/holds/{hold['hold_id']}", headers=b.headers)).status == 409
    assert (await client.delete(f"/api/holds/{hold['hold_id']}", headers=b.headers)).status == 409
    assert (await _seat_states(client, event["id"]))["s1"] == "held"


async def test_a_gated_event_requires_a_valid_admission_token(clocked_client, make_event, create_user,
                                                              keyring, redis_client) -> None:
    client = await clocked_client()
    event = await make_event(client)
    ev = event["id"]
    await redis_client.set(client.app[KEYS].event_room(ev), "r1")
    fan = await create_user()
    assert (await _hold(client, fan, ev, {"seats": ["s1"]})).status == 403
    other, _ = mint_admission_token(keyring, visitor_id="v1", room="r1", event_id="999", ttl_s=60)
    assert (await _hold(client, fan, ev, {"seats": ["s1"]}, **{"X-Admission-Token": other})).status == 403
    assert (await _hold(client, fan, ev, {"seats": ["s1"]}, **{"X-Admission-Token": "garbage"})).status == 403
    token, _ = mint_admission_token(keyring, visitor_id="v1", room="r1", event_id=ev, ttl_s=60)
    # the token counts only while its shopper session lasts (tests/abuse/test_shopper_session_end.py)
    await redis_client.zadd(client.app[KEYS].room_active("r1"), {"v1": client.app[CLOCK].now_ms() + 60_000})
    assert (await _hold(client, fan, ev, {"seats": ["s1"]}, **{"X-Admission-Token": token})).status == 201


async def test_holds_are_refused_on_draft_and_cancelled_events(clocked_client, make_event, create_user) -> None:
    client = await clocked_client()
    draft = await make_event(client, draft=True)
    fan = await create_user()
    assert (await _hold(client, fan, draft["id"], {"seats": ["s1"]})).status == 409
    live = await make_event(client)
    org = live["_organizer"]
    assert (await client.delete(f"/api/events/{live['id']}", headers=org.headers)).status == 200
    resp = await _hold(client, fan, live["id"], {"seats": ["s1"]})
    assert resp.status == 409 and (await resp.json())["type"] == "/problems/event-not-on-sale"
