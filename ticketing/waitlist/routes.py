"""HTTP handlers of the waiting list after sold out, and the cleanup contexts that build its store
(the ticketing app) and its offering loop (the worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from aiohttp import web

from stagedoor import rate_limit
from stagedoor.auth import authenticate, require_principal, require_user
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize_action
from stagedoor.tasks import stop_task
from stagedoor.web import CALLS, DB, KEYS, SETTINGS, decode_body, json_response
from ticketing.appkeys import CLOCK, HOLDS, INVENTORY, METRICS, WAITLIST, WAITLIST_OFFERING
from ticketing.holds.routes import HoldOut, hold_out
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.ids import parse_event_id
from ticketing.waitlist import waitlist
from ticketing.waitlist.offering import WaitlistOffering
from ticketing.waitlist.store import WaitlistStore

api = Api(tag="waitlist")


class JoinRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    quantity: Annotated[int, msgspec.Meta(ge=1, le=50)] = 1


async def waitlist_ctx(app: web.Application) -> AsyncIterator[None]:
    """The waiting list's store (after db_ctx)."""
    app[WAITLIST] = WaitlistStore(app[DB])
    yield


async def waitlist_worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker's offering loop (after inventory_ctx; before the consumers, whose ``waitlist`` group
    notes events for it)."""
    app[WAITLIST] = store = WaitlistStore(app[DB])
    app[WAITLIST_OFFERING] = offering = WaitlistOffering(
        store, app[INVENTORY], AdmissionHooks(app[CALLS], app[KEYS]), app[SETTINGS], app[METRICS], app[CLOCK])
    task = asyncio.create_task(offering.run(), name="waitlist-offering")
    yield
    await stop_task(task)


@api.post("/api/events/{event_id}/waitlist", body=JoinRequest, response=waitlist.Joined, status=201,
          errors=(401, 403, 404, 409, 422, 429), auth="bearer",
          summary="Join a sold-out event's waiting list (one entry per account; 409 when on it already or when "
                  "the event is not sold out)")
async def join_waitlist(request: web.Request) -> web.Response:
    principal = authorize_action(await require_user(request), Action.HOLD_CREATE)
    await rate_limit.enforce(request, "hold", principal.id)  # the shopping bucket
    event_id = parse_event_id(request.match_info["event_id"])
    body = await decode_body(request, JoinRequest) if request.body_exists else JoinRequest()
    app = request.app
    joined = await waitlist.join(app[WAITLIST], app[METRICS], principal, event_id, body.quantity)
    return json_response(joined, status=201)


@api.get("/api/events/{event_id}/waitlist", response=waitlist.StandingOut, errors=(401, 403, 404), auth="bearer",
         summary="Your place on an event's waiting list")
async def my_standing(request: web.Request) -> web.Response:
    principal = authorize_action(await require_user(request), Action.HOLD_CREATE)
    event_id = parse_event_id(request.match_info["event_id"])
    return json_response(await waitlist.standing(request.app[WAITLIST], principal, event_id))


@api.delete("/api/events/{event_id}/waitlist", status=204, errors=(401, 403, 404), auth="bearer",
            summary="Leave an event's waiting list (a pending offer is given up: it passes to the next fan)")
async def leave_waitlist(request: web.Request) -> web.Response:
    principal = authorize_action(await require_user(request), Action.HOLD_CREATE)
    event_id = parse_event_id(request.match_info["event_id"])
    app = request.app
    await waitlist.leave(app[WAITLIST], app[HOLDS], app[METRICS], principal, event_id, app[CLOCK].now_ms())
    return web.Response(status=204)


@api.get("/api/events/{event_id}/waitlist/stats", response=waitlist.StatsOut, errors=(401, 403, 404),
         auth="bearer", summary="The waiting list's length and conversion (organizer, admin)")
async def waitlist_stats(request: web.Request) -> web.Response:
    principal = authorize_action(await require_principal(request), Action.SALES_READ)  # before the lookup
    event_id = parse_event_id(request.match_info["event_id"])
    return json_response(await waitlist.stats(request.app[WAITLIST], principal, event_id))


@api.get("/api/users/me/offers", response=waitlist.OffersOut, errors=(401, 403), auth="bearer",
         summary="Your open waiting-list offers: tickets held for you until expires_at")
async def my_offers(request: web.Request) -> web.Response:
    principal = authorize_action(await authenticate(request), Action.PROFILE_READ)
    app = request.app
    return json_response(await waitlist.my_offers(app[WAITLIST], principal, app[CLOCK].now_ms()))


@api.post("/api/offers/{offer_id}/accept", response=HoldOut, status=201, errors=(401, 403, 404, 410),
          auth="bearer",
          summary="Accept a waiting-list offer: its hold is yours to buy (POST /api/holds/{id}/purchase)")
async def accept_offer(request: web.Request) -> web.Response:
    principal = authorize_action(await authenticate(request), Action.PURCHASE)
    app = request.app
    now_ms = app[CLOCK].now_ms()
    hold = await waitlist.accept(app[WAITLIST], app[HOLDS], app[METRICS], principal, request.match_info["offer_id"],
                                 now_ms)
    return json_response(hold_out(hold, now_ms), status=201, headers={"Location": f"/api/holds/{hold.id}"})
