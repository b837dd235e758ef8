"""Purchases under concurrency, on real Redis + PostgreSQL.

- 1,000 concurrent holds of 1-4 random seats over a 100-seat event, then every successful
  hold purchased concurrently: PostgreSQL has each seat at most once, and Redis agrees.
- Sold once, the unique constraint has the last word: N concurrent commits of one seat
  (different holds, as after a Redis data loss) produce exactly one ticket. The control runs
  the same race against an unguarded check-then-insert built here, which must sell twice.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import asyncpg

from stagedoor.auth import mint_access_token
from stagedoor.web import DB
from ticketing.appkeys import HOLDS
from ticketing.orders.store import CommitRefused, NewOrder, NewTicket, OrderStore

REQUESTS = 1_000


async def _users(db: Any, keyring: Any, n: int) -> list[tuple[str, str]]:
    rows = [(f"fan-{uuid.uuid4().hex[:12]}@example.test",) for _ in range(n)]
    await db.executemany("INSERT INTO users (email, password_hash, name) VALUES ($1, 'x', 'Fan')", rows)
    ids = [r["id"] for r in await db.fetch("SELECT id::text AS id FROM users WHERE email = ANY($1::text[])",
                                            [r[0] for r in rows])]
    return [(uid, mint_access_token(keyring, subject=uid, roles=["customer"], ttl_s=600)) for uid in ids]


def _pit(**extra: Any) -> dict[str, Any]:
    return dict(seat_map={"sections": [{"name": "Pit", "rows": [
        {"label": f"R{r}", "seats": [{"number": str(n), "tier": "A"} for n in range(1, 11)]} for r in range(1, 11)]}]},
        tiers=[{"code": "A", "name": "Pit", "price": 1000}], max_tickets_per_order=4, **extra)


async def test_all_successful_holds_bought_concurrently_sell_each_seat_once(shop, make_event, db,
                                                                            keyring) -> None:
    client = await shop(db_pool_max_size=20)
    event = await make_event(client, **_pit())
    seat_ids = [f"s{i}" for i in range(1, 101)]
    users = await _users(db, keyring, REQUESTS)
    rng = random.Random(7)
    wanted = [rng.sample(seat_ids, rng.randint(1, 4)) for _ in range(REQUESTS)]

    async def hold(token: str, seats: list[str]) -> tuple[int, dict[str, Any]]:
        resp = await client.post(f"/api/events/{event['id']}/holds", json={"seats": seats},
                                 headers={"Authorization": f"Bearer {token}"})
        return resp.status, await resp.json()

    held = await asyncio.gather(*(hold(tok, seats) for (_, tok), seats in zip(users, wanted, strict=True)))
    winners = [(tok, body) for ((_, tok), (status, body)) in zip(users, held, strict=True) if status == 201]
    assert winners

    async def purchase(token: str, hold_id: str) -> tuple[int, dict[str, Any]]:
        resp = await client.post(f"/api/holds/{hold_id}/purchase",
                                 json={"payment": {"method": "card", "token": "tok_ok"}, "email": "f@example.test"},
                                 headers={"Authorization": f"Bearer {token}", "Idempotency-Key": hold_id})
        return resp.status, await resp.json()

    bought = await asyncio.gather(*(purchase(tok, body["hold_id"]) for tok, body in winners))
    assert all(status == 201 for status, _ in bought), [b for b in bought if b[0] != 201][:3]

    rows = await client.app[DB].fetch("SELECT seat_id FROM tickets WHERE event_id = $1", int(event["id"]))
    pg_sold = [r["seat_id"] for r in rows]
    assert len(pg_sold) == len(set(pg_sold)), "a seat was sold twice"
    assert sorted(pg_sold) == sorted(s for _, body in winners for s in body["seats"])
    assert client.gateway.charge_count == len(winners)
    # Redis agrees with PostgreSQL: exactly the sold seats are "s", the rest free
    redis, keys = client.app[HOLDS].redis, client.app[HOLDS].keys
    states = {k.decode(): v.decode() for k, v in (await redis.hgetall(keys.inventory_seats(event["id"]))).items()}
    assert {s for s, v in states.items() if v == "s"} == set(pg_sold)
    assert all(v == "0" for s, v in states.items() if s not in set(pg_sold))
    counts = await client.app[HOLDS].tier_counts(event["id"])
    assert counts is not None and counts["A"].sold == len(pg_sold) and counts["A"].free == 100 - len(pg_sold)


def _order(user_id: str, event_id: int, seat: str) -> NewOrder:
    order_id = str(uuid.uuid4())
    return NewOrder(
        id=order_id, user_id=user_id, event_id=event_id, hold_id=f"{event_id}-{uuid.uuid4().hex[:24]}",
        subtotal=1000, discount=0, total=1000, currency="EUR", discount_code_id=None, email="f@example.test",
        tickets=[NewTicket(id=str(uuid.uuid4()), seat=seat, tier="A", price=1000, code="c")],
        ga_tier=None, ga_quantity=0, account_limit=10, gateway="mock", charge_id="ch_" + uuid.uuid4().hex,
        outbox_payload=b"{}", idempotency_key=uuid.uuid4().hex, fingerprint="f", response=b"{}",
    )


async def test_concurrent_commits_of_one_seat_make_one_ticket_and_the_unguarded_control_sells_twice(
        shop, make_event, db, keyring) -> None:
    client = await shop()
    event = await make_event(client, **_pit())
    event_id = int(event["id"])
    users = await _users(db, keyring, 20)
    store = OrderStore(client.app[DB])

    async def commit(user_id: str) -> str:
        try:
            await store.commit_purchase(_order(user_id, event_id, "s1"))
            return "sold"
        except CommitRefused as exc:
            return exc.reason

    outcomes = await asyncio.gather(*(commit(uid) for uid, _ in users))
    assert outcomes.count("sold") == 1 and outcomes.count("seat_sold") == len(users) - 1, outcomes
    assert await db.fetchval("SELECT count(*) FROM tickets WHERE seat_id = 's1'") == 1
    assert await db.fetchval("SELECT count(*) FROM orders") == 1  # the refused ones left nothing behind
    assert await db.fetchval("SELECT count(*) FROM payments") == 1

    # Control: the same race against a check-then-insert with no constraint sells the seat twice.
    await db.execute("CREATE TABLE unguarded_tickets (event_id bigint, seat_id text)")

    async def unguarded(conn_pool: asyncpg.Pool) -> None:
        async with conn_pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchval("SELECT count(*) FROM unguarded_tickets WHERE event_id = $1 AND seat_id = 's1'",
                                        event_id)
            await asyncio.sleep(0.05)  # the gap every check-then-write has
            if not taken:
                await conn.execute("INSERT INTO unguarded_tickets VALUES ($1, 's1')", event_id)

    await asyncio.gather(*(unguarded(db) for _ in range(5)))
    assert await db.fetchval("SELECT count(*) FROM unguarded_tickets") > 1
