"""Redis loses its data mid-sale: the gate holds, the room comes back, evictions stay.

The waiting room, the admission service and ticketing run over HTTP on a Redis server of this
test's own (never the shared one) and PostgreSQL. Fans queue, are admitted and buy; one visitor
is evicted; attackers keep trying holds without an admission token (and, once the data is gone,
with an admitted fan's now stale token). Then Redis is FLUSHALLed:

- no hold without a valid admission succeeds at any moment (before, during and after);
- the room, its config and its event link are back in Redis, and the queue page answers,
  within 10 s (measured: the rebuild loop, not a page load, brings them back);
- the evicted visitor stays evicted; fans who had places rejoin and buy through the gate.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import redis.asyncio as redis_asyncio

from stagedoor.embedded import EmbeddedRedis, free_port
from stagedoor.redis_keys import RedisKeys
from tests.support.events import buy, seat_map
from tests.support.rooms import iso

ROOM = "bigsale"
BACK_WITHIN_S = 10.0


async def _join(wr: Any, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await wr.post(f"/api/rooms/{ROOM}/join", json={}, headers=headers)
    wr.session.cookie_jar.clear()  # every fan is a browser of their own
    return resp.status, await resp.json()


async def _admission(wr: Any, queue_token: str, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resp = await wr.get(f"/api/rooms/{ROOM}/status", headers={"Authorization": f"Bearer {queue_token}"})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        if body["state"] == "admitted":
            return str(body["admission_token"])
        await asyncio.sleep(0.05)
    raise AssertionError("never admitted")


async def _admitted_fan(wr: Any) -> tuple[str, str, str]:
    """(visitor id, queue token, admission token) of a fan who joined and was admitted."""
    status, joined = await _join(wr)
    assert status == 201, joined
    return joined["visitor_id"], joined["queue_token"], await _admission(wr, joined["queue_token"])


class Attack:
    """Holds without an admission token, and with a token whose shopper session Redis lost."""

    def __init__(self, shop: Any, event_id: str, attacker: Any, stale_user: Any) -> None:
        self.shop = shop
        self.event_id = event_id
        self.attacker = attacker
        self.stale_user = stale_user
        self.stale_token: str | None = None  # set once the data is gone
        self.seen: list[tuple[float, str, int]] = []
        self.unavailable_without_retry_after = 0
        self.stop = asyncio.Event()

    async def _try(self, kind: str, headers: dict[str, str]) -> None:
        resp = await self.shop.post(f"/api/events/{self.event_id}/holds", json={"seats": ["s100"]}, headers=headers)
        self.seen.append((time.monotonic(), kind, resp.status))
        if resp.status == 503 and "Retry-After" not in resp.headers:
            self.unavailable_without_retry_after += 1

    async def run(self) -> None:
        while not self.stop.is_set():
            await self._try("no-token", self.attacker.headers)
            if self.stale_token is not None:
                await self._try("stale-token", {**self.stale_user.headers, "X-Admission-Token": self.stale_token})
            await asyncio.sleep(0.005)


async def test_flushall_mid_sale_never_ungates_and_the_room_is_back_within_10_s(
        service_client: Any, make_settings: Any, make_event: Any, create_user: Any, db: Any,
        admin_headers: dict[str, str], tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), persist=False).start()
    raw = redis_asyncio.Redis.from_url(server.url)
    try:
        settings = make_settings(redis_url=server.url, rate_limits_enabled=False, admission_tick_ms=50)
        keys = RedisKeys(settings.redis_key_prefix)
        shop = await service_client("ticketing", settings)
        adm = await service_client("admission", settings)
        wr = await service_client("waitingroom", settings)
        event = await make_event(shop, seat_map=seat_map(rows=5, per_row=20), max_tickets_per_order=2,
                                 tiers=[{"code": "A", "name": "Stalls", "price": 1000}])
        ev = event["id"]
        config = {"event_id": ev, "opens_at": iso(-60), "starts_at": iso(-30), "rate_per_s": 20, "max_active": 500,
                  "session_ttl_s": 600, "abandon_after_s": 0, "shop_url": "https://shop.example/", "title": "Big sale"}
        resp = await adm.put(f"/admin/rooms/{ROOM}", json=config, headers=admin_headers)
        assert resp.status == 201, await resp.text()

        # The admin's writes are in PostgreSQL: config, link, then an eviction.
        row = await db.fetchrow("SELECT rate_per_s, title, version FROM rooms WHERE room_id = $1", ROOM)
        assert (row["rate_per_s"], row["title"]) == (20.0, "Big sale")
        assert await db.fetchval("SELECT room_id FROM room_events WHERE event_id = $1", ev) == ROOM
        evicted_id, evicted_queue_token, _ = await _admitted_fan(wr)
        resp = await adm.delete(f"/admin/rooms/{ROOM}/visitors/{evicted_id}", headers=admin_headers)
        assert resp.status == 204
        assert await db.fetchval("SELECT count(*) FROM room_evictions WHERE room_id = $1 AND visitor_id = $2",
                                 ROOM, evicted_id) == 1

        # The sale runs: an admitted fan holds and buys through the gate.
        buyer = await create_user()
        _, _, token = await _admitted_fan(wr)
        resp = await shop.post(f"/api/events/{ev}/holds", json={"seats": ["s1"]},
                               headers={**buyer.headers, "X-Admission-Token": token})
        assert resp.status == 201, await resp.text()
        resp = await buy(shop, buyer, (await resp.json())["hold_id"], headers={"X-Admission-Token": token})
        assert resp.status == 201, await resp.text()

        # A fan admitted before the loss (their token is valid until exp; their session is in Redis).
        _, stale_queue_token, stale_token = await _admitted_fan(wr)
        attack = Attack(shop, ev, await create_user(), await create_user())
        attacking = asyncio.create_task(attack.run())
        await asyncio.sleep(0.3)

        await raw.flushall()  # our own server: every key is gone
        lost_at = time.monotonic()
        attack.stale_token = stale_token

        # Back without any page load (config, gate, evictions): the rebuild loop sees the missing marker.
        while not (await raw.exists(keys.room_config(ROOM)) and await raw.get(keys.event_room(ev))
                   and await raw.sismember(keys.room_evicted(ROOM), evicted_id)):
            assert time.monotonic() - lost_at < BACK_WITHIN_S, "the room did not come back"
            await asyncio.sleep(0.02)
        config_back_s = time.monotonic() - lost_at
        resp = await wr.get(f"/rooms/{ROOM}")
        assert resp.status == 200, await resp.text()
        page_back_s = time.monotonic() - lost_at
        assert config_back_s < BACK_WITHIN_S and page_back_s < BACK_WITHIN_S
        cfg = {k.decode(): v.decode() for k, v in (await raw.hgetall(keys.room_config(ROOM))).items()}
        assert (cfg["rate"], cfg["max_active"], cfg["title"], cfg["event_id"]) == ("20.0", "500", "Big sale", ev)
        assert await raw.get(keys.event_room(ev)) == ROOM.encode()
        resp = await adm.get(f"/admin/rooms/{ROOM}", headers=admin_headers)
        assert resp.status == 200 and (await resp.json())["rate_per_s"] == 20.0

        await asyncio.sleep(1.0)  # the attack goes on after the rebuild too
        attack.stop.set()
        await attacking

        assert not [s for s in attack.seen if s[2] == 201], "a hold without a valid admission succeeded"
        after = [(kind, status) for t, kind, status in attack.seen if t > lost_at]
        assert {kind for kind, _ in after} == {"no-token", "stale-token"}
        assert {status for _, status in after} <= {403, 503}, after
        assert any(status == 403 for _, status in after)  # the rebuilt gate answers
        assert attack.unavailable_without_retry_after == 0

        # The evicted visitor stays evicted: their queue token is refused, rejoining too.
        resp = await wr.get(f"/api/rooms/{ROOM}/status", headers={"Authorization": f"Bearer {evicted_queue_token}"})
        assert resp.status == 401, await resp.text()
        status, body = await _join(wr, evicted_queue_token)
        assert status in (401, 403), body
        assert evicted_id.encode() in await raw.smembers(keys.room_evicted(ROOM))

        # A fan whose place Redis lost rejoins with their queue token and buys through the gate.
        resp = await wr.get(f"/api/rooms/{ROOM}/status", headers={"Authorization": f"Bearer {stale_queue_token}"})
        assert resp.status == 200 and (await resp.json())["state"] == "expired"
        status, joined = await _join(wr, stale_queue_token)
        assert status in (200, 201), joined
        fresh = await _admission(wr, joined["queue_token"])
        fan = await create_user()
        resp = await shop.post(f"/api/events/{ev}/holds", json={"seats": ["s2"]},
                               headers={**fan.headers, "X-Admission-Token": fresh})
        assert resp.status == 201, await resp.text()
        resp = await buy(shop, fan, (await resp.json())["hold_id"], headers={"X-Admission-Token": fresh})
        assert resp.status == 201, await resp.text()
        sold = await db.fetchval("SELECT count(*) FROM tickets WHERE event_id = $1", int(ev))
        assert sold == 2  # the order sold before the loss is kept, and one after
        print(f"room config back in {config_back_s:.2f}s, queue page in {page_back_s:.2f}s; "
              f"{len(attack.seen)} refused holds")
    finally:
        await raw.aclose()
        server.stop()
