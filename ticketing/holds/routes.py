"""HTTP handlers of seat holds: POST /api/events/{id}/holds, GET and DELETE /api/holds/{id}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from aiohttp import web

from stagedoor import rate_limit
from stagedoor.admission_tokens import AdmissionRequired, verify_admission_token
from stagedoor.auth import authenticate, require_user
from stagedoor.bus import EMITTER
from stagedoor.errors import StagedoorError
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize_action
from stagedoor.web import CALLS, KEYRING, KEYS, SETTINGS, decode_body, json_response
from ticketing.appkeys import CLOCK, HOLDS, INVENTORY, METRICS
from ticketing.holds import holds, shopper_session
from ticketing.holds.holds import MAX_SEATS_PER_REQUEST
from ticketing.holds.types import Hold
from ticketing.ids import parse_event_id
from ticketing.shop_health import measured

api = Api(tag="holds")


class HoldRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    seats: Annotated[list[Annotated[str, msgspec.Meta(max_length=40)]],
                     msgspec.Meta(min_length=1, max_length=MAX_SEATS_PER_REQUEST)] | None = None
    tier: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEATS_PER_REQUEST)] | None = None


class HoldItemOut(msgspec.Struct, kw_only=True):
    seat: str | None
    tier: str
    price: int


class HoldOut(msgspec.Struct, kw_only=True):
    hold_id: str
    event_id: str
    state: str
    seats: list[str]
    tier: str | None
    quantity: int
    items: list[HoldItemOut]
    expires_at: datetime
    total: int
    currency: str


def hold_out(hold: Hold, now_ms: int) -> HoldOut:
    return HoldOut(
        hold_id=hold.id, event_id=hold.event_id, state=hold.effective_state(now_ms), seats=hold.seats,
        tier=hold.tier, quantity=hold.quantity,
        items=[HoldItemOut(seat=i.seat, tier=i.tier, price=i.price) for i in hold.items],
        expires_at=datetime.fromtimestamp(hold.expires_ms / 1000, tz=UTC), total=hold.total,
        currency=hold.currency,
    )


@api.post("/api/events/{event_id}/holds", body=HoldRequest, response=HoldOut, status=201,
          errors=(401, 403, 404, 409, 503), auth="bearer",
          extra_responses={403: shopper_session.OPENAPI_403_HOLD},
          summary="Hold seats or general-admission tickets, all or nothing (409 with conflicts)")
@measured(lambda request: request.match_info["event_id"])
async def create_hold(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    try:
        principal = authorize_action(await require_user(request), Action.HOLD_CREATE)
        await rate_limit.enforce(request, "hold", principal.id)
        event_id = str(parse_event_id(request.match_info["event_id"]))
        body = await decode_body(request, HoldRequest)
        token = request.headers.get("X-Admission-Token")
        claims = verify_admission_token(app[KEYRING], token, event_id) if token else None
        now_ms = app[CLOCK].now_ms()
        # A valid token counts only while its shopper session lasts (evicted/finished -> not admitted).
        admitted = claims is not None and await shopper_session.is_active(app[CALLS], app[KEYS], claims, now_ms)
        try:
            hold = await holds.place_hold(app[INVENTORY], event_id, principal.id, seat_ids=body.seats,
                                          tier=body.tier, quantity=body.quantity, now_ms=now_ms, admitted=admitted,
                                          admission=claims if admitted else None)
        except AdmissionRequired:
            if claims is not None:  # gated, and the session behind the token is over
                raise shopper_session.session_ended(claims) from None
            raise
    except StagedoorError as exc:
        metrics.holds_total.labels(exc.code).inc()
        raise
    metrics.holds_total.labels("held").inc()
    if claims is not None and admitted:
        await shopper_session.chose(app[CALLS], app[KEYS], claims, len(hold.items), now_ms)
    if EMITTER in app and app[SETTINGS].bus_emit_hold_placed:  # best-effort, buffered: no extra round trip
        app[EMITTER].emit("HoldPlaced", hold.id, {"hold_id": hold.id, "event_id": event_id, "user_id": principal.id,
                                                  "quantity": len(hold.items), "expires_ms": hold.expires_ms})
    return json_response(hold_out(hold, now_ms), status=201, headers={"Location": f"/api/holds/{hold.id}"})


@api.get("/api/holds/{hold_id}", response=HoldOut, errors=(401, 403, 404, 409), auth="bearer",
         summary="Inspect one of your holds")
async def get_hold(request: web.Request) -> web.Response:
    # Before the hold is looked up: a caller who may read no hold (an API client) gets 403.
    principal = authorize_action(await authenticate(request), Action.HOLD_READ)
    hold = await holds.get_own_hold(request.app[HOLDS], request.match_info["hold_id"], principal)
    return json_response(hold_out(hold, request.app[CLOCK].now_ms()))


@api.delete("/api/holds/{hold_id}", errors=(401, 403, 404, 409), status=204, auth="bearer",
            summary="Release one of your holds")
async def release_hold(request: web.Request) -> web.Response:
    principal = authorize_action(await authenticate(request), Action.HOLD_RELEASE)
    app = request.app
    now_ms = app[CLOCK].now_ms()
    hold = await holds.release_own_hold(app[HOLDS], request.match_info["hold_id"], principal, now_ms)
    if hold.is_live(now_ms):
        app[METRICS].holds_total.labels("released").inc()
        app[METRICS].hold_duration_seconds.labels("released").observe(
            max(0, now_ms - hold.created_ms) / 1000)
    return web.Response(status=204)
