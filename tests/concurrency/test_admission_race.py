"""Many accounts race one admission token over HTTP (asyncio.gather): exactly one account wins it,
every other gets 403 /problems/admission-in-use, and Redis holds only the winner's tickets. Each
account asks for seats nobody else wants (or general-admission tickets with room for all), so the
admission is the only thing they compete for."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from stagedoor.admission_tokens import mint_admission_token
from stagedoor.auth import mint_access_token
from stagedoor.clock import ManualClock
from stagedoor.web import KEYS
from ticketing.appkeys import HOLDS

RACERS = 60


async def _users(db: Any, keyring: Any, n: int) -> list[tuple[str, str]]:
    """n fresh accounts: (user id, access token)."""
    emails = [f"fan-{uuid.uuid4().hex[:12]}@example.test" for _ in range(n)]
    ids = await db.fetch("INSERT INTO users (email, password_hash, name) "
                         "SELECT e, 'x', 'Fan' FROM unnest($1::text[]) e RETURNING id::text AS id", emails)
    return [(r["id"], mint_access_token(keyring, subject=r["id"], roles=["customer"], ttl_s=600)) for r in ids]


async def _race(client: Any, event_id: str, token: str, bodies: list[dict[str, Any]],
                users: list[tuple[str, str]]) -> list[tuple[str, int, dict[str, Any]]]:
    async def attempt(user: tuple[str, str], body: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
        resp = await client.post(f"/api/events/{event_id}/holds", json=body,
                                 headers={"Authorization": f"Bearer {user[1]}", "X-Admission-Token": token})
        return user[0], resp.status, await resp.json()

    return list(await asyncio.gather(*(attempt(u, b) for u, b in zip(users, bodies, strict=True))))


async def _gate(client: Any, redis_client: Any, event_id: str, keyring: Any, now_ms: int) -> tuple[str, str]:
    keys = client.app[KEYS]
    await redis_client.set(keys.event_room(event_id), "r1")
    await redis_client.zadd(keys.room_active("r1"), {"v1": now_ms + 600_000})  # v1's shopper session is live
    token, claims = mint_admission_token(keyring, visitor_id="v1", room="r1", event_id=event_id, ttl_s=600)
    return token, claims.jti


async def test_many_accounts_racing_one_admission_for_seats_exactly_one_wins(
        clocked_client, make_settings, make_event, db, keyring, redis_client, manual_clock: ManualClock) -> None:
    client = await clocked_client(make_settings(rate_limits_enabled=False))
    event = await make_event(client, seat_map={"sections": [{"name": "Pit", "rows": [
        {"label": "R1", "seats": [{"number": str(n), "tier": "A"} for n in range(1, 2 * RACERS + 1)]}]}]},
        tiers=[{"code": "A", "name": "Pit", "price": 1000}], max_tickets_per_order=2)
    ev = event["id"]
    token, jti = await _gate(client, redis_client, ev, keyring, manual_clock.now_ms())
    users = await _users(db, keyring, RACERS)
    bodies = [{"seats": [f"s{2 * i + 1}", f"s{2 * i + 2}"]} for i in range(RACERS)]

    results = await _race(client, ev, token, bodies, users)
    winners = [(uid, body) for uid, status, body in results if status == 201]
    assert len(winners) == 1, [status for _, status, _ in results]
    losers = [body for _, status, body in results if status != 201]
    assert all(b["type"] == "/problems/admission-in-use" and b["status"] == 403 for b in losers), losers[:3]
    winner, hold = winners[0]

    redis, keys = client.app[HOLDS].redis, client.app[KEYS]
    assert await redis.hget(keys.admission_binding(ev, jti), "u") == winner.encode()
    states = {k.decode(): v.decode() for k, v in (await redis.hgetall(keys.inventory_seats(ev))).items()}
    held = {s for s, v in states.items() if v not in ("0", "s")}
    assert held == set(hold["seats"])
    assert await redis.hlen(keys.hold_records(ev)) == 1
    assert await redis.hkeys(keys.hold_users(ev)) == [winner.encode()]


async def test_many_accounts_racing_one_admission_for_general_admission_exactly_one_wins(
        clocked_client, make_settings, make_event, db, keyring, redis_client, manual_clock: ManualClock) -> None:
    client = await clocked_client(make_settings(rate_limits_enabled=False))
    event = await make_event(client, seat_map=None, max_tickets_per_order=3,
                             tiers=[{"code": "GA", "name": "Floor", "price": 2500, "quantity": 3 * RACERS}])
    ev = event["id"]
    token, jti = await _gate(client, redis_client, ev, keyring, manual_clock.now_ms())
    users = await _users(db, keyring, RACERS)

    results = await _race(client, ev, token, [{"tier": "GA", "quantity": 3}] * RACERS, users)
    winners = [uid for uid, status, _ in results if status == 201]
    assert len(winners) == 1, [status for _, status, _ in results]
    assert {(status, body["type"]) for _, status, body in results if status != 201} == {
        (403, "/problems/admission-in-use")}
    redis, keys = client.app[HOLDS].redis, client.app[KEYS]
    assert await redis.hget(keys.admission_binding(ev, jti), "u") == winners[0].encode()
    detail = await (await client.get(f"/api/events/{ev}")).json()
    assert detail["tiers"][0]["available"] == 3 * RACERS - 3


async def test_control_a_binding_checked_outside_the_hold_script_lets_several_accounts_in(
        redis_client, redis_prefix: str) -> None:
    """The same race with the binding read before the hold and written after it (two steps, as a
    handler could do around the script): several accounts win, which shows the tests above can
    catch the bug the in-script binding guards against."""
    key = f"{redis_prefix}:control:adm"
    winners: list[int] = []

    async def unguarded(n: int) -> None:
        owner = await redis_client.hget(key, "u")
        if owner is None or owner == str(n).encode():
            await redis_client.ping()  # the hold's own round trip
            await redis_client.hset(key, "u", str(n))
            winners.append(n)

    await asyncio.gather(*(unguarded(n) for n in range(RACERS)))
    assert len(winners) > 1, "the unguarded control should let several accounts use one admission"
