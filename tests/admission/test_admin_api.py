"""The admin API over real HTTP (port 8082 app): rooms, live stats, runtime changes, auth."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from rooms.queue_store import QueueStore
from stagedoor.settings import Settings

PROBLEM = "application/problem+json"


def iso(offset_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


@pytest.fixture
def adm_settings(make_settings: Any) -> Settings:
    return make_settings(rate_limits_enabled=False, admission_tick_ms=50)


@pytest.fixture
async def adm(service_client: Any, adm_settings: Settings) -> Any:
    return await service_client("admission", adm_settings)


def room_body(**kw: Any) -> dict[str, Any]:
    body = {"event_id": "7", "mode": "fifo", "opens_at": iso(-60), "starts_at": iso(-30), "rate_per_s": 5,
            "max_active": 100, "session_ttl_s": 300, "abandon_after_s": 0, "shop_url": "https://shop.example/"}
    body.update(kw)
    return body


async def fill(adm: Any, room: str, n: int) -> list[str]:
    """n visitors join directly through the store (the waiting room app is not needed here)."""
    from admission.appkeys import ADMIN

    queue: QueueStore = adm.app[ADMIN].queue
    now = int(time.time() * 1000)
    return [(await queue.join(room, None, now, burst_s=0.5)).visitor_id for _ in range(n)]


async def test_put_creates_then_replaces_and_links_the_event(adm: Any, admin_headers: Any,
                                                             adm_settings: Settings, redis_client: Any) -> None:
    from stagedoor.redis_keys import RedisKeys

    keys = RedisKeys(adm_settings.redis_key_prefix)
    resp = await adm.put("/admin/rooms/r1", json=room_body(), headers=admin_headers)
    assert resp.status == 201
    body = await resp.json()
    assert (body["room"], body["mode"], body["rate_per_s"], body["waiting"], body["sold_out"]) == (
        "r1", "fifo", 5.0, 0, False)
    assert await redis_client.get(keys.event_room("7")) == b"r1"
    resp = await adm.put("/admin/rooms/r1", json=room_body(event_id="9", rate_per_s=8), headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["rate_per_s"] == 8.0
    assert await redis_client.get(keys.event_room("7")) is None
    assert await redis_client.get(keys.event_room("9")) == b"r1"
    # another room cannot take an event that is already gated
    clash = await adm.put("/admin/rooms/r2", json=room_body(event_id="9"), headers=admin_headers)
    assert clash.status == 409 and clash.content_type == PROBLEM
    assert (await adm.get("/admin/rooms/r2", headers=admin_headers)).status == 404
    assert (await adm.delete("/admin/rooms/r1", headers=admin_headers)).status == 204
    assert await redis_client.get(keys.event_room("9")) is None
    assert (await adm.get("/admin/rooms/r1", headers=admin_headers)).status == 404


@pytest.mark.parametrize("bad", [
    {"rate_per_s": -1}, {"rate_per_s": 0}, {"mode": "random"}, {"max_active": 0},
    {"opens_at": iso(100), "starts_at": iso(50)}, {"closes_at": iso(-40)}, {"surprise": True},
    {"session_ttl_s": 5}, {"abandon_after_s": 10_000}, {"event_id": "x1"}, {"opens_at": "yesterday"},
    {"opens_at": "2026-01-01T00:00:00"}, {"shop_url": "javascript:alert(1)"}, {"pow_difficulty": 99},
])
async def test_invalid_room_payloads_are_422_and_change_nothing(adm: Any, admin_headers: Any,
                                                                bad: dict[str, Any]) -> None:
    assert (await adm.put("/admin/rooms/r1", json=room_body(), headers=admin_headers)).status == 201
    before = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    resp = await adm.put("/admin/rooms/r1", json=room_body(**bad), headers=admin_headers)
    assert resp.status == 422 and resp.content_type == PROBLEM, await resp.text()
    patch = await adm.patch("/admin/rooms/r1", json=bad, headers=admin_headers)
    assert patch.status == 422, await patch.text()
    created = await adm.put("/admin/rooms/r9", json=room_body(**{"event_id": "99", **bad}), headers=admin_headers)
    assert created.status == 422
    assert (await adm.get("/admin/rooms/r9", headers=admin_headers)).status == 404
    after = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    assert after == before


async def test_unknown_rooms_and_visitors_are_404(adm: Any, admin_headers: Any) -> None:
    for method, path in [("GET", "/admin/rooms/nope"), ("PATCH", "/admin/rooms/nope"),
                         ("POST", "/admin/rooms/nope/pause"), ("DELETE", "/admin/rooms/nope/visitors/1_abcdef"),
                         ("GET", "/admin/rooms/Bad%20Id")]:
        resp = await adm.request(method, path, json={} if method == "PATCH" else None, headers=admin_headers)
        assert resp.status == 404 and resp.content_type == PROBLEM, (method, path)
    await adm.put("/admin/rooms/r1", json=room_body(), headers=admin_headers)
    assert (await adm.delete("/admin/rooms/r1/visitors/not-a-visitor", headers=admin_headers)).status == 404


async def test_auth_admin_key_admin_role_organizer_owner_only(adm: Any, admin_headers: Any, create_user: Any,
                                                              db: asyncpg.Pool) -> None:
    assert (await adm.get("/admin/rooms")).status == 401
    assert (await adm.get("/admin/rooms", headers={"Authorization": "Bearer nope"})).status == 401
    customer = await create_user(roles=["customer"])
    assert (await adm.put("/admin/rooms/r1", json=room_body(), headers=customer.headers)).status == 403
    admin = await create_user(roles=["admin"])
    assert (await adm.put("/admin/rooms/r1", json=room_body(), headers=admin.headers)).status == 201
    organizer = await create_user(roles=["organizer"])
    # not the organizer of event 7 (or no events table at all): the 404 of a missing room
    assert (await adm.get("/admin/rooms/r1", headers=organizer.headers)).status == 404
    assert (await adm.patch("/admin/rooms/r1", json={"rate_per_s": 1}, headers=organizer.headers)).status == 404
    try:
        venue = await db.fetchval("INSERT INTO venues (name, city) VALUES ('Hall', 'Oslo') RETURNING id")
        event_id = await db.fetchval(
            "INSERT INTO events (organizer_id, venue_id, title, category, city, starts_at, ends_at, currency,"
            " max_tickets_per_order, seated) VALUES ($1::uuid, $2, 'Show', 'music', 'Oslo', now(), now(), 'EUR',"
            " 4, false) RETURNING id", organizer.id, venue)
    except asyncpg.PostgresError as exc:
        pytest.skip(f"events schema not available: {exc}")
    mine = await adm.put("/admin/rooms/mine", json=room_body(event_id=str(event_id)), headers=organizer.headers)
    assert mine.status == 201
    assert (await adm.post("/admin/rooms/mine/pause", headers=organizer.headers)).status == 200
    listed = await (await adm.get("/admin/rooms", headers=organizer.headers)).json()
    assert [r["room"] for r in listed["items"]] == ["mine"]
    everything = await (await adm.get("/admin/rooms", headers=admin_headers)).json()
    assert [r["room"] for r in everything["items"]] == ["mine", "r1"]


async def _admitted_total(adm: Any, admin_headers: Any) -> int:
    return (await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json())["admitted_total"]


async def test_patch_rate_is_effective_within_a_second_and_pause_resume(adm: Any, admin_headers: Any) -> None:
    await adm.put("/admin/rooms/r1", json=room_body(rate_per_s=0.5, max_active=1000), headers=admin_headers)
    await fill(adm, "r1", 300)
    await asyncio.sleep(0.3)
    resp = await adm.patch("/admin/rooms/r1", json={"rate_per_s": 100}, headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["rate_per_s"] == 100.0
    start = await _admitted_total(adm, admin_headers)
    await asyncio.sleep(1.0)
    assert await _admitted_total(adm, admin_headers) - start >= 40  # at 0.5/s it would be 0 or 1
    paused = await adm.post("/admin/rooms/r1/pause", headers=admin_headers)
    assert paused.status == 200 and (await paused.json())["paused"] is True
    await asyncio.sleep(0.3)
    frozen = await _admitted_total(adm, admin_headers)
    await asyncio.sleep(0.5)
    assert await _admitted_total(adm, admin_headers) == frozen
    assert (await adm.post("/admin/rooms/r1/resume", headers=admin_headers)).status == 200
    await asyncio.sleep(0.8)
    stats = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    assert stats["admitted_total"] > frozen and stats["admit_rate_observed"] > 0
    assert stats["waiting"] + stats["active"] == 300


async def test_list_rooms_with_stats_and_metrics(adm: Any, admin_headers: Any) -> None:
    await adm.put("/admin/rooms/a", json=room_body(event_id="1", paused=True), headers=admin_headers)
    await adm.put("/admin/rooms/b", json=room_body(event_id="2", paused=True), headers=admin_headers)
    await fill(adm, "b", 3)
    listed = await (await adm.get("/admin/rooms", headers=admin_headers)).json()
    assert [(r["room"], r["waiting"]) for r in listed["items"]] == [("a", 0), ("b", 3)]
    await asyncio.sleep(1.2)  # the controller picks up new rooms within a second
    text = await (await adm.get("/metrics")).text()
    assert 'admission_waiting_visitors{room="b"} 3.0' in text
    assert "admission_tick_duration_seconds_count" in text


async def test_openapi_documents_the_admin_api(adm: Any) -> None:
    spec = await (await adm.get("/openapi.json")).json()
    assert {"/admin/rooms/{room}", "/admin/rooms/{room}/pause", "/admin/rooms/{room}/visitors/{visitor_id}",
            "/admin/rooms"} <= set(spec["paths"])
