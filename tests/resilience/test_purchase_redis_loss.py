"""A sale keeps going through Redis data loss, on a Redis server of this test's own.

Buyers hold and buy continuously while Redis is FLUSHALLed, then restarted empty. The
inventory is rebuilt from PostgreSQL (the hold path detects the missing inventory), the
sale continues, no seat is ever sold twice and no confirmed (201) order is lost.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as redis_asyncio

from stagedoor.auth import mint_access_token
from stagedoor.embedded import EmbeddedRedis, free_port
from stagedoor.web import DB
from ticketing.appkeys import HOLDS, INVENTORY

SEATS = 200
WORKERS = 16


async def _users(db: Any, keyring: Any, n: int) -> list[tuple[str, str]]:
    rows = [(f"fan-{uuid.uuid4().hex[:12]}@example.test",) for _ in range(n)]
    await db.executemany("INSERT INTO users (email, password_hash, name) VALUES ($1, 'x', 'Fan')", rows)
    ids = [r["id"] for r in await db.fetch("SELECT id::text AS id FROM users WHERE email = ANY($1::text[])",
                                            [r[0] for r in rows])]
    return [(uid, mint_access_token(keyring, subject=uid, roles=["customer"], ttl_s=600)) for uid in ids]


class Sale:
    """WORKERS buyers, each with a fresh user per attempt, holding 1-2 random seats and buying."""

    def __init__(self, client: Any, event_id: str, users: list[tuple[str, str]]) -> None:
        self.client = client
        self.event_id = event_id
        self.users = users
        self.confirmed: list[dict[str, Any]] = []
        self.statuses: dict[int, int] = {}
        self.stop = asyncio.Event()
        self.problems: set[str] = set()
        self.rng = random.Random(11)

    async def _attempt(self) -> None:
        if not self.users:
            self.stop.set()
            return
        _, token = self.users.pop()
        auth = {"Authorization": f"Bearer {token}"}
        seats = [f"s{i}" for i in self.rng.sample(range(1, SEATS + 1), self.rng.randint(1, 2))]
        resp = await self.client.post(f"/api/events/{self.event_id}/holds", json={"seats": seats}, headers=auth)
        self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
        if resp.status != 201:
            if resp.status >= 500:
                self.problems.add((await resp.json()).get("detail", "")[:100])
            return
        hold = await resp.json()
        resp = await self.client.post(f"/api/holds/{hold['hold_id']}/purchase",
                                      json={"payment": {"method": "card", "token": "tok_ok"}, "email": "f@x.test"},
                                      headers={**auth, "Idempotency-Key": hold["hold_id"]})
        self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
        if resp.status == 201:
            self.confirmed.append(await resp.json())

    async def worker(self) -> None:
        while not self.stop.is_set():
            try:
                await self._attempt()
            except Exception:  # a connection reset while Redis restarts: keep selling
                await asyncio.sleep(0.01)

    async def until(self, more: int, timeout_s: float = 30.0) -> None:
        target = len(self.confirmed) + more
        deadline = time.monotonic() + timeout_s
        while len(self.confirmed) < target:
            assert time.monotonic() < deadline, f"stalled at {len(self.confirmed)}: {self.statuses} {self.problems}"
            await asyncio.sleep(0.02)


async def test_flushall_and_restart_mid_sale_rebuild_and_never_sell_twice(shop, make_event, db, keyring,
                                                                         tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "r1", port=port, persist=False).start()
    try:
        client = await shop(redis_url=server.url, db_pool_max_size=10)
        event = await make_event(client, seat_map={"sections": [{"name": "Hall", "rows": [
            {"label": f"R{r}", "seats": [{"number": str(n), "tier": "A"} for n in range(1, 21)]}
            for r in range(1, SEATS // 20 + 1)]}]},
            tiers=[{"code": "A", "name": "Hall", "price": 1000}], max_tickets_per_order=2)
        sale = Sale(client, event["id"], await _users(db, keyring, 3_000))
        workers = [asyncio.create_task(sale.worker()) for _ in range(WORKERS)]
        try:
            await sale.until(10)
            raw = redis_asyncio.Redis.from_url(server.url)
            await raw.flushall()  # our own server: data loss mid-sale
            await raw.aclose()
            after_flush = len(sale.confirmed)
            await sale.until(10)
            assert len(sale.confirmed) >= after_flush + 10

            server.stop()  # restart: empty (no persistence)
            await asyncio.sleep(0.2)
            server = EmbeddedRedis(tmp_path / "r2", persist=False)
            server.port = port  # same address (free_port would dodge the port in TIME_WAIT)
            server.start()
            await sale.until(10)
        finally:
            sale.stop.set()
            await asyncio.gather(*workers, return_exceptions=True)

        rows = await client.app[DB].fetch("SELECT seat_id FROM tickets WHERE event_id = $1", int(event["id"]))
        pg_sold = [r["seat_id"] for r in rows]
        assert len(pg_sold) == len(set(pg_sold)), "a seat was sold twice"
        confirmed_seats = [t["seat"] for order in sale.confirmed for t in order["tickets"]]
        assert sorted(confirmed_seats) == sorted(pg_sold), "a confirmed order is missing, or an unconfirmed one exists"
        assert client.gateway.charge_count - len(client.gateway.refunds) == len(sale.confirmed)

        # Redis never claims sold what PostgreSQL did not sell; after a rebuild they agree exactly.
        holds = client.app[HOLDS]
        states = {k.decode(): v.decode() for k, v in
                  (await holds.redis.hgetall(holds.keys.inventory_seats(event["id"]))).items()}
        assert {s for s, v in states.items() if v == "s"} <= set(pg_sold)
        assert await client.app[INVENTORY].rebuild_event_inventory(event["id"])
        states = {k.decode(): v.decode() for k, v in
                  (await holds.redis.hgetall(holds.keys.inventory_seats(event["id"]))).items()}
        assert {s for s, v in states.items() if v == "s"} == set(pg_sold)
    finally:
        server.stop()
