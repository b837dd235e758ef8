""""It is your turn": an address left on join (validated, optional) reaches the visitor once when
the admission controller admits them; it is forgotten in Redis at admission and never stored in
PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from admission.controller import AdmissionController
from admission.metrics import AdmissionMetrics
from rooms.queue_store import QueueStore
from rooms.store import Room, RoomStore
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from tests.support.notifications import metric
from ticketing.notifications.your_turn import YourTurnDrain


async def _room(redis_client: Any, prefix: str) -> tuple[RoomStore, QueueStore, RedisKeys, int]:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    keys = RedisKeys(prefix)
    calls = RedisCalls.batched(redis_client, scripts)
    rooms, queue = RoomStore(calls, keys), QueueStore(calls, keys)
    now_ms = int(time.time() * 1000)
    # 0.01 admissions/s with a one-token bucket: nobody is admitted on join, each tick far in
    # the future admits exactly one visitor.
    await rooms.put(Room(room="hot", event_id=None, mode="fifo", opens_at_ms=now_ms - 3_600_000,
                         starts_at_ms=now_ms - 1000, closes_at_ms=0, rate_per_s=0.01, max_active=1000,
                         session_ttl_s=600, abandon_after_s=0, pow_difficulty=0, shop_url=None, paused=False), now_ms)
    return rooms, queue, keys, now_ms


async def test_a_waiting_visitor_who_left_an_address_is_emailed_once_when_admitted(
        service_client: Any, settings: Any, redis_client: Any, redis_prefix: str, sink: Any, mail_settings: Any,
        make_notifications: Any, pool: Any) -> None:
    rooms, queue, keys, now_ms = await _room(redis_client, redis_prefix)
    client = await service_client("waitingroom")
    joined = []
    for body in ({"email": "first@example.test"}, {}, {"email": "third@example.test"}):
        client.session.cookie_jar.clear()  # three different visitors
        resp = await client.post("/api/rooms/hot/join", json=body)
        assert resp.status == 201, await resp.text()
        joined.append((await resp.json())["visitor_id"])
    stored = await redis_client.hgetall(keys.room_emails("hot"))
    assert {k.decode(): v.decode() for k, v in stored.items()} == {
        joined[0]: "first@example.test", joined[2]: "third@example.test"}
    assert 0 < await redis_client.ttl(keys.room_emails("hot")) <= settings.queue_token_ttl_s

    n = make_notifications(mail_settings(sink.port))
    drain = YourTurnDrain(n, redis_client, keys)
    clock = [now_ms / 1000 + 500]
    controller = AdmissionController(settings, rooms, queue, AdmissionMetrics(), clock=lambda: clock[0])

    results = await controller.tick()  # admits the first visitor
    assert results["hot"].admitted == 1
    assert await drain.run_once() == 1
    assert await drain.run_once() == 0  # drained
    await sink.handler.wait_for(1)
    assert sink.recipients() == ["first@example.test"]
    [msg] = sink.handler.parsed()
    assert msg["Subject"] == "It is your turn: the shop is open for you"
    assert "https://queue.example.test/rooms/hot" in msg.get_body(("plain",)).get_content()
    assert await redis_client.hget(keys.room_emails("hot"), joined[0]) is None  # forgotten at admission

    clock[0] += 500
    assert (await controller.tick())["hot"].admitted == 1  # the visitor without an address
    assert await drain.run_once() == 0
    clock[0] += 500
    assert (await controller.tick())["hot"].admitted == 1
    assert await drain.run_once() == 1
    await sink.handler.wait_for(2)
    assert sink.recipients() == ["first@example.test", "third@example.test"]
    assert await redis_client.hlen(keys.room_emails("hot")) == 0
    assert await redis_client.llen(keys.room_your_turn("hot")) == 0

    rows = await pool.fetch("SELECT recipient, status FROM notifications WHERE kind = 'your_turn'")
    assert len(rows) == 2 and all(r["status"] == "sent" for r in rows)
    assert all(r["recipient"].startswith("sha256:") and "@" not in r["recipient"] for r in rows)
    assert metric(n, "notifications_sent_total", kind="your_turn", channel="email") == 2


async def test_your_turn_send_failure_is_retried_on_the_next_pass(
        settings: Any, redis_client: Any, redis_prefix: str, start_smtp: Any, mail_settings: Any,
        make_notifications: Any) -> None:
    from tests.support.notifications import FlakySink

    rooms, queue, keys, now_ms = await _room(redis_client, redis_prefix)
    joined = await queue.join("hot", None, now_ms, burst_s=settings.admission_burst_s)
    await queue.remember_email("hot", joined.visitor_id, "late@example.test", 600)
    flaky = FlakySink(fail=1)
    sink = await start_smtp(flaky)
    n = make_notifications(mail_settings(sink.port, notification_retry_attempts=1))
    controller = AdmissionController(settings, rooms, queue, AdmissionMetrics(), clock=lambda: now_ms / 1000 + 500)
    await controller.tick()
    drain = YourTurnDrain(n, redis_client, keys)
    assert await drain.run_once() == 0  # 451: kept on the list
    assert await redis_client.llen(keys.room_your_turn("hot")) == 1
    assert await drain.run_once() == 1
    assert await redis_client.llen(keys.room_your_turn("hot")) == 0
    assert sink.recipients() == ["late@example.test"]


async def test_join_email_is_optional_bounded_and_validated(service_client: Any, redis_client: Any,
                                                            redis_prefix: str) -> None:
    await _room(redis_client, redis_prefix)
    client = await service_client("waitingroom")
    for bad in ("not-an-address", "a@b", "x" * 250 + "@example.test", "two@@example.test", 42):
        client.session.cookie_jar.clear()
        resp = await client.post("/api/rooms/hot/join", json={"email": bad})
        assert resp.status == 422, (bad, resp.status)
        problem = await resp.json()
        assert resp.content_type == "application/problem+json"
        assert "example.test" not in str(problem) and "not-an-address" not in str(problem)  # never echoed
    resp = await client.post("/api/rooms/hot/join", json={"email": None})
    assert resp.status == 201
    spec = await (await client.get("/openapi.json")).json()
    assert "email" in str(spec)
