"""An admission token stops working for holds and purchases as soon as the shopper session
behind it ends (SRE eviction, a finished purchase), although the JWT itself is still valid.

Three real apps on one Redis prefix and one key ring: the admission app (admin API + controller),
the waiting room (join, status -> admission token) and ticketing (holds, purchases)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from stagedoor.clock import ManualClock
from tests.support.events import buy


def iso(offset_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


@pytest.fixture
def manual_clock() -> ManualClock:
    # ticketing's clock must agree with the admission controller's (session expiries are wall-clock ms)
    return ManualClock(time.time_ns() // 1_000_000)


@pytest.fixture
async def stack(shop: Any, service_client: Any, make_settings: Any, make_event: Any, admin_headers: Any) -> Any:
    settings = make_settings(rate_limits_enabled=False, admission_tick_ms=50)
    ticketing = await shop()
    admission = await service_client("admission", settings)
    waitingroom = await service_client("waitingroom", settings)
    event = await make_event(ticketing)
    room = "ev-" + uuid.uuid4().hex[:8]
    resp = await admission.put(f"/admin/rooms/{room}", headers=admin_headers, json={
        "event_id": event["id"], "mode": "fifo", "opens_at": iso(-60), "starts_at": iso(-30),
        "rate_per_s": 100, "max_active": 50, "session_ttl_s": 600, "abandon_after_s": 0,
        "shop_url": "http://shop.example/"})
    assert resp.status == 201, await resp.text()
    return ticketing, admission, waitingroom, event["id"], room


async def admitted_visitor(waitingroom: Any, room: str) -> tuple[str, str]:
    """Join through the waiting room and poll until admitted: (visitor_id, admission_token)."""
    waitingroom.session.cookie_jar.clear()
    resp = await waitingroom.post(f"/api/rooms/{room}/join", json={})
    assert resp.status == 201, await resp.text()
    joined = await resp.json()
    bearer = {"Authorization": f"Bearer {joined['queue_token']}"}
    for _ in range(200):
        status = await (await waitingroom.get(f"/api/rooms/{room}/status", headers=bearer)).json()
        if status["state"] == "admitted":
            return joined["visitor_id"], status["admission_token"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"never admitted: {status}")


async def hold(ticketing: Any, user: Any, event_id: str, seat: str, token: str) -> Any:
    return await ticketing.post(f"/api/events/{event_id}/holds", json={"seats": [seat]},
                                headers={**user.headers, "X-Admission-Token": token})


async def test_an_evicted_shopper_can_neither_hold_nor_buy_with_the_still_valid_token(
        stack: Any, create_user: Any, admin_headers: Any) -> None:
    ticketing, admission, waitingroom, event_id, room = stack
    evicted_visitor, evicted_token = await admitted_visitor(waitingroom, room)
    _, other_token = await admitted_visitor(waitingroom, room)
    fan, other_fan = await create_user(), await create_user()

    resp = await hold(ticketing, fan, event_id, "s1", evicted_token)
    assert resp.status == 201, await resp.text()
    first_hold = (await resp.json())["hold_id"]

    resp = await admission.delete(f"/admin/rooms/{room}/visitors/{evicted_visitor}", headers=admin_headers)
    assert resp.status == 204

    # the purchase of the hold made before the eviction is refused, nothing is charged
    resp = await buy(ticketing, fan, first_hold, headers={"X-Admission-Token": evicted_token})
    assert resp.status == 403
    problem = await resp.json()
    assert problem["type"] == "/problems/shopper-session-ended" and room in problem["detail"]
    assert resp.content_type == "application/problem+json"
    assert ticketing.gateway.charge_count == 0
    # and, once that hold is gone, a new hold with the same token too
    assert (await ticketing.delete(f"/api/holds/{first_hold}", headers=fan.headers)).status == 204
    resp = await hold(ticketing, fan, event_id, "s2", evicted_token)
    assert resp.status == 403 and (await resp.json())["type"] == "/problems/shopper-session-ended"

    # another admitted shopper of the same room is unaffected
    resp = await hold(ticketing, other_fan, event_id, "s3", other_token)
    assert resp.status == 201, await resp.text()
    resp = await buy(ticketing, other_fan, (await resp.json())["hold_id"], headers={"X-Admission-Token": other_token})
    assert resp.status == 201, await resp.text()


async def test_a_finished_shopper_cannot_hold_again_but_its_purchase_still_replays(
        stack: Any, create_user: Any) -> None:
    ticketing, _, waitingroom, event_id, room = stack
    _, token = await admitted_visitor(waitingroom, room)
    fan = await create_user()
    resp = await hold(ticketing, fan, event_id, "s1", token)
    assert resp.status == 201, await resp.text()
    hold_id = (await resp.json())["hold_id"]
    bought = await buy(ticketing, fan, hold_id, key="finish-1", headers={"X-Admission-Token": token})
    assert bought.status == 201, await bought.text()

    resp = await hold(ticketing, fan, event_id, "s2", token)  # the purchase ended the session
    assert resp.status == 403 and (await resp.json())["type"] == "/problems/shopper-session-ended"
    # the same Idempotency-Key again is the same answer, not a refusal
    again = await buy(ticketing, fan, hold_id, key="finish-1", headers={"X-Admission-Token": token})
    assert again.status == 201 and await again.json() == await bought.json()
    assert ticketing.gateway.charge_count == 1


async def test_the_session_check_leaves_ungated_events_alone(shop: Any, make_event: Any, create_user: Any,
                                                             keyring: Any) -> None:
    """A token whose session is unknown does not stop a hold on an event without a room."""
    from stagedoor.admission_tokens import mint_admission_token

    ticketing = await shop()
    event = await make_event(ticketing)
    token, _ = mint_admission_token(keyring, visitor_id="v-gone", room="gone", event_id=event["id"], ttl_s=60)
    resp = await hold(ticketing, await create_user(), event["id"], "s1", token)
    assert resp.status == 201, await resp.text()


async def test_the_hold_route_documents_the_session_refusal(shop: Any) -> None:
    spec = await (await (await shop()).get("/openapi.json")).json()
    text = spec["paths"]["/api/events/{event_id}/holds"]["post"]["responses"]["403"]["description"]
    assert "shopper-session-ended" in text and "admission-required" in text
