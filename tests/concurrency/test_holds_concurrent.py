"""1,000 concurrent hold requests (asyncio.gather over HTTP) of 1-4 random seats over a
100-seat event: no seat ends up in two live holds, and Redis agrees with the winners.
The control runs the same race against an unguarded check-then-write and must double-hold."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from stagedoor.auth import mint_access_token
from ticketing.appkeys import HOLDS

REQUESTS = 1_000


async def _users(db: Any, keyring: Any, n: int) -> list[tuple[str, str]]:
    rows = [(f"fan-{uuid.uuid4().hex[:12]}@example.test",) for _ in range(n)]
    await db.executemany("INSERT INTO users (email, password_hash, name) VALUES ($1, 'x', 'Fan')", rows)
    ids = [r["id"] for r in await db.fetch("SELECT id::text AS id FROM users WHERE email = ANY($1::text[])",
                                            [r[0] for r in rows])]
    return [(uid, mint_access_token(keyring, subject=uid, roles=["customer"], ttl_s=600)) for uid in ids]


async def test_a_thousand_concurrent_holds_never_share_a_seat(clocked_client, make_settings, make_event, db,
                                                              keyring) -> None:
    client = await clocked_client(make_settings(rate_limits_enabled=False))
    event = await make_event(client, seat_map={"sections": [{"name": "Pit", "rows": [
        {"label": f"R{r}", "seats": [{"number": str(n), "tier": "A"} for n in range(1, 11)]} for r in range(1, 11)]}]},
        tiers=[{"code": "A", "name": "Pit", "price": 1000}], max_tickets_per_order=4)
    seat_ids = [f"s{i}" for i in range(1, 101)]
    users = await _users(db, keyring, REQUESTS)
    rng = random.Random(5)
    wanted = [rng.sample(seat_ids, rng.randint(1, 4)) for _ in range(REQUESTS)]

    async def attempt(token: str, seats: list[str]) -> tuple[int, dict[str, Any]]:
        resp = await client.post(f"/api/events/{event['id']}/holds", json={"seats": seats},
                                 headers={"Authorization": f"Bearer {token}"})
        return resp.status, await resp.json()

    results = await asyncio.gather(*(attempt(tok, seats) for (_, tok), seats in zip(users, wanted, strict=True)))
    statuses = [s for s, _ in results]
    assert set(statuses) <= {201, 409}, sorted(set(statuses))
    winners = [body for status, body in results if status == 201]
    assert winners, "somebody must win"
    claimed: dict[str, str] = {}
    for hold in winners:
        for seat in hold["seats"]:
            assert seat not in claimed, f"{seat} held by {claimed[seat]} and {hold['hold_id']}"
            claimed[seat] = hold["hold_id"]
    # every refusal names real conflicts: seats some winner holds
    for status, body in results:
        if status == 409:
            assert body["conflicts"] and set(body["conflicts"]) <= set(claimed)
    # Redis agrees: each claimed seat points at its winner, every other seat is free
    redis, keys = client.app[HOLDS].redis, client.app[HOLDS].keys
    states = {k.decode(): v.decode() for k, v in (await redis.hgetall(keys.inventory_seats(event["id"]))).items()}
    for seat in seat_ids:
        if seat in claimed:
            assert states[seat].startswith(claimed[seat] + ":")
        else:
            assert states[seat] == "0"
    detail = await (await client.get(f"/api/events/{event['id']}")).json()
    assert detail["tiers"][0]["available"] == 100 - len(claimed)


async def test_control_an_unguarded_check_then_write_double_holds(redis_client, redis_prefix) -> None:
    """The same race without the script: read every seat, then write. It must double-hold,
    which shows the test above can catch the bug it guards against."""
    key = f"{redis_prefix}:control:seats"
    await redis_client.hset(key, mapping={f"s{i}": "0" for i in range(1, 101)})
    rng = random.Random(5)
    wanted = [rng.sample([f"s{i}" for i in range(1, 101)], rng.randint(1, 4)) for _ in range(REQUESTS)]
    granted: list[tuple[int, list[str]]] = []
    connections = asyncio.Semaphore(50)  # the client's pool is bounded; 50 in flight still race

    async def unguarded(n: int, seats: list[str]) -> None:
        async with connections:
            values = [await redis_client.hget(key, s) for s in seats]
            if all(v == b"0" for v in values):
                for s in seats:
                    await redis_client.hset(key, s, f"h{n}")
                granted.append((n, seats))

    await asyncio.gather(*(unguarded(n, seats) for n, seats in enumerate(wanted)))
    seen: dict[str, int] = {}
    doubles = 0
    for n, seats in granted:
        for s in seats:
            if s in seen:
                doubles += 1
            seen[s] = n
    assert doubles > 0, "the unguarded control should double-hold"
