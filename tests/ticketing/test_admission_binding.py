"""An admission is one fan's, over HTTP with real Redis and PostgreSQL: the admission token's
``jti`` is bound to the first account that holds with it (every other account: 403
/problems/admission-in-use, nothing changed), and the tickets held plus bought through one
admission stay within the event's max_tickets_per_order (422 /problems/admission-limit-reached,
nothing changed). The race of many accounts on one token is tests/concurrency/test_admission_race.py."""

from __future__ import annotations

import time
from typing import Any

from rooms.queue_store import QueueStore
from rooms.store import RoomConfig, RoomStore, room_from_config
from stagedoor.admission_tokens import AdmissionClaims, mint_admission_token
from stagedoor.clock import ManualClock
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.web import CALLS, KEYS
from tests.support.events import buy, seat_map
from ticketing.appkeys import HOLDS
from ticketing.holds.store import ADMISSION_BINDING_GRACE_MS, HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier

PROBLEM = "application/problem+json"
ROOM = "hall"
SESSION_TTL_S = 600


async def _admitted(client: Any, event_id: str, now_ms: int) -> str:
    """A visitor admitted through a real waiting room gating ``event_id``: its visitor id."""
    app = client.app
    rooms = RoomStore(app[CALLS], app[KEYS])
    if await rooms.get(ROOM) is None:
        await rooms.put(room_from_config(ROOM, RoomConfig(event_id=event_id, rate_per_s=100.0, max_active=50,
                                                          session_ttl_s=SESSION_TTL_S), now_ms), now_ms)
    queue = QueueStore(app[CALLS], app[KEYS])
    joined = await queue.join(ROOM, None, now_ms, burst_s=1.0)
    if joined.outcome != "admitted":
        await queue.admit_tick(ROOM, now_ms + 1_000, max_batch=50, burst_s=1.0)
    assert await queue.is_active(ROOM, joined.visitor_id, now_ms + 1_000)
    return joined.visitor_id


async def _token(client: Any, keyring: Any, event_id: str, clock: ManualClock) -> tuple[str, str, str]:
    """(admission token, its jti, visitor id) of a freshly admitted visitor (the clock moves 1 s)."""
    visitor = await _admitted(client, event_id, clock.now_ms())
    clock.advance(1_000)
    token, claims = mint_admission_token(keyring, visitor_id=visitor, room=ROOM, event_id=event_id,
                                         ttl_s=SESSION_TTL_S)
    return token, claims.jti, visitor


async def _hold(client: Any, user: Any, event_id: str, body: dict[str, Any], token: str | None) -> Any:
    headers = {**user.headers, **({"X-Admission-Token": token} if token else {})}
    return await client.post(f"/api/events/{event_id}/holds", json=body, headers=headers)


async def _stores(client: Any, db: Any, event_id: str) -> tuple[dict[str, Any], list[Any]]:
    """Everything the event and its room keep in Redis (each key's value and whether it expires),
    and the event's orders, tickets and payments in PostgreSQL."""
    redis = client.app[HOLDS].redis
    keys = client.app[KEYS]
    found: dict[str, Any] = {}
    for pattern in (f"{keys.event_tag(event_id)}:*", f"{keys.room_tag(ROOM)}:*"):
        async for key in redis.scan_iter(match=pattern, count=1000):
            kind = (await redis.type(key)).decode()
            if kind == "hash":
                value: Any = sorted((await redis.hgetall(key)).items())
            elif kind == "zset":
                value = await redis.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = sorted(await redis.smembers(key))
            elif kind == "list":
                value = await redis.lrange(key, 0, -1)
            else:
                value = await redis.get(key)
            found[key.decode()] = (kind, value, await redis.pttl(key) > 0)
    rows = await db.fetch(
        "SELECT o.id::text AS id, o.status, (SELECT count(*) FROM tickets t WHERE t.order_id = o.id) AS tickets "
        "FROM orders o WHERE o.event_id = $1 ORDER BY o.id", int(event_id))
    return found, [tuple(r) for r in rows]


async def _seat_states(client: Any, event_id: str) -> dict[str, str]:
    resp = await client.get(f"/api/events/{event_id}/seats")
    assert resp.status == 200
    return {s["id"]: s["state"] for s in (await resp.json())["seats"]}


async def _refused(resp: Any, status: int, problem: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    body: dict[str, Any] = await resp.json()
    assert body["type"] == f"/problems/{problem}" and body["status"] == status
    return body


async def test_one_admission_holds_for_the_first_account_only(shop, make_event, create_user, keyring, db,
                                                             manual_clock: ManualClock) -> None:
    manual_clock.value = int(time.time() * 1000)  # the app's clock and the token's are the same clock
    client = await shop()
    event = await make_event(client, seat_map=seat_map(rows=1, per_row=10), max_tickets_per_order=6,
                             tiers=[{"code": "A", "name": "Stalls", "price": 100}])
    ev = event["id"]
    token, jti, _ = await _token(client, keyring, ev, manual_clock)
    a, b, c = await create_user(), await create_user(), await create_user()

    resp = await _hold(client, a, ev, {"seats": ["s1", "s2", "s3", "s4", "s5", "s6"]}, token)
    assert resp.status == 201, await resp.text()
    held = await resp.json()
    before = await _stores(client, db, ev)

    for other, seats in ((b, ["s7"]), (c, ["s8", "s9"]), (b, ["s10"])):
        body = await _refused(await _hold(client, other, ev, {"seats": seats}, token), 403, "admission-in-use")
        assert body["title"] == "This admission belongs to another account"
        assert "another account" in body["detail"]
        assert await _stores(client, db, ev) == before, "a refused hold changed nothing"
    states = await _seat_states(client, ev)
    assert {s for s, state in states.items() if state == "held"} == set(held["seats"])

    # the binding lives as long as the admission token (and a grace), not for ever
    redis, keys = client.app[HOLDS].redis, client.app[KEYS]
    binding = await redis.hgetall(keys.admission_binding(ev, jti))
    assert binding == {b"u": a.id.encode(), b"n": b"0"}
    ttl = await redis.pttl(keys.admission_binding(ev, jti))
    assert SESSION_TTL_S * 1000 - 5_000 < ttl <= SESSION_TTL_S * 1000 + ADMISSION_BINDING_GRACE_MS

    # the first account keeps using its admission: released, then held again
    assert (await client.delete(f"/api/holds/{held['hold_id']}", headers=a.headers)).status == 204
    assert (await _hold(client, a, ev, {"seats": ["s9"]}, token)).status == 201
    # another fan's own admission works for that fan
    own, _, _ = await _token(client, keyring, ev, manual_clock)
    assert (await _hold(client, b, ev, {"seats": ["s10"]}, own)).status == 201
    # a gated event still needs a token: dropping the shared one is no way round
    await _refused(await _hold(client, c, ev, {"seats": ["s8"]}, None), 403, "admission-required")


async def test_a_shared_admission_is_refused_for_general_admission_too(shop, make_event, create_user, keyring, db,
                                                                       manual_clock: ManualClock) -> None:
    manual_clock.value = int(time.time() * 1000)
    client = await shop()
    event = await make_event(client, seat_map=None, max_tickets_per_order=6,
                             tiers=[{"code": "GA", "name": "Floor", "price": 2500, "quantity": 30}])
    ev = event["id"]
    token, _, _ = await _token(client, keyring, ev, manual_clock)
    a, b, c = await create_user(), await create_user(), await create_user()
    assert (await _hold(client, a, ev, {"tier": "GA", "quantity": 6}, token)).status == 201
    before = await _stores(client, db, ev)
    for other in (b, c):
        await _refused(await _hold(client, other, ev, {"tier": "GA", "quantity": 6}, token), 403, "admission-in-use")
        assert await _stores(client, db, ev) == before
    detail = await (await client.get(f"/api/events/{ev}")).json()
    assert detail["tiers"][0]["available"] == 24


async def test_an_admission_buys_at_most_max_tickets_per_order_across_holds(shop, make_event, create_user, keyring,
                                                                            db, manual_clock: ManualClock) -> None:
    manual_clock.value = int(time.time() * 1000)
    client = await shop()
    event = await make_event(client, seat_map=seat_map(rows=1, per_row=10), max_tickets_per_order=4,
                             tiers=[{"code": "A", "name": "Stalls", "price": 100}])
    ev = event["id"]
    token, jti, visitor = await _token(client, keyring, ev, manual_clock)
    a, b = await create_user(), await create_user()
    hold = await (await _hold(client, a, ev, {"seats": ["s1", "s2", "s3"]}, token)).json()
    resp = await buy(client, a, hold["hold_id"], headers={"X-Admission-Token": token})
    assert resp.status == 201, await resp.text()
    keys = client.app[KEYS]
    redis = client.app[HOLDS].redis
    assert await redis.hget(keys.admission_binding(ev, jti), "n") == b"3"  # counted by confirm_hold_sold

    # A purchase ends the shopper session; that end is best-effort (a direct call, then the bus).
    # Until it lands the token still admits, and the cap is what stops a second order past the limit.
    queue = QueueStore(client.app[CALLS], keys)
    assert not await queue.is_active(ROOM, visitor, manual_clock.now_ms())
    await redis.zadd(keys.room_active(ROOM), {visitor: manual_clock.now_ms() + 60_000})

    before = await _stores(client, db, ev)
    body = await _refused(await _hold(client, a, ev, {"seats": ["s4", "s5"]}, token), 422, "admission-limit-reached")
    assert (body["limit"], body["bought"]) == (4, 3)
    assert "3 already bought" in body["detail"]
    assert await _stores(client, db, ev) == before, "a refused hold changed nothing"
    # another account still cannot use it, bought or not
    await _refused(await _hold(client, b, ev, {"seats": ["s6"]}, token), 403, "admission-in-use")
    assert await _stores(client, db, ev) == before
    # what is left of the admission's limit can still be held and bought
    last = await _hold(client, a, ev, {"seats": ["s4"]}, token)
    assert last.status == 201, await last.text()
    resp = await buy(client, a, (await last.json())["hold_id"], key="k2", headers={"X-Admission-Token": token})
    assert resp.status == 201, await resp.text()
    assert await redis.hget(keys.admission_binding(ev, jti), "n") == b"4"
    await redis.zadd(keys.room_active(ROOM), {visitor: manual_clock.now_ms() + 60_000})
    await _refused(await _hold(client, a, ev, {"seats": ["s5"]}, token), 422, "admission-limit-reached")
    orders = (await _stores(client, db, ev))[1]
    assert sorted(r[2] for r in orders) == [1, 3]  # 4 tickets from one place in line


async def test_holds_without_an_admission_are_unchanged_on_an_ungated_event(shop, make_event, create_user,
                                                                            redis_client) -> None:
    client = await shop()
    event = await make_event(client, max_tickets_per_order=2)
    ev = event["id"]
    a = await create_user()
    hold = await (await _hold(client, a, ev, {"seats": ["s1", "s2"]}, None)).json()
    assert (await buy(client, a, hold["hold_id"])).status == 201
    assert (await _hold(client, a, ev, {"seats": ["s3", "s4"]}, None)).status == 201  # no admission, no cap
    keys = client.app[KEYS]
    assert [k async for k in redis_client.scan_iter(match=f"{keys.event_tag(ev)}:adm:*")] == []


async def test_a_sale_after_the_binding_expired_leaves_no_key_behind(redis_client, redis_prefix: str) -> None:
    """confirm_hold_sold counts only into a live binding: once the admission's hash has expired it
    is not created again (without a TTL it would stay for ever)."""
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    keys = RedisKeys(redis_prefix)
    store = HoldStore(RedisCalls.batched(redis_client, scripts), keys)
    meta = InventoryMeta(status="on_sale", currency="EUR", max_per_order=4, hold_ttl_ms=60_000)
    tiers = [StagedTier(code="A", price=100, capacity=0, sold=0, general_admission=False)]
    await store.load("5", meta, tiers, [("s1", "A", False), ("s2", "A", False)], "g1")
    now = 1_900_000_000_000
    admission = AdmissionClaims(visitor_id="v1", room="r1", event_id="5", jti="f" * 32, exp=now // 1000 + 600)
    binding = keys.admission_binding("5", admission.jti)

    kept = await store.hold_seats("5", f"5-{1:024x}", "u1", ["s1"], now, True, admission)
    assert 600_000 < await redis_client.pttl(binding) <= 600_000 + ADMISSION_BINDING_GRACE_MS
    await store.confirm_sold(await store.lock_for_payment(kept, now + 1, 60_000), now + 2)
    assert await redis_client.hgetall(binding) == {b"u": b"u1", b"n": b"1"}
    assert await redis_client.pttl(binding) > 0  # counting keeps the binding's expiry

    await redis_client.delete(binding)  # the token's lifetime is over
    late = await store.hold_seats("5", f"5-{2:024x}", "u2", ["s2"], now + 3, True, admission)
    await redis_client.delete(binding)
    await store.confirm_sold(await store.lock_for_payment(late, now + 4, 60_000), now + 5)
    assert not await redis_client.exists(binding)
