"""HTTP handlers of the catalog: thin (parse, call one domain function, encode)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor import errors, rate_limit
from stagedoor.auth import authenticate
from stagedoor.clock import SystemClock
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize_action
from stagedoor.web import (
    CALLS,
    DB,
    KEYS,
    SETTINGS,
    decode_body,
    decode_json,
    decode_query,
    json_response,
)
from ticketing.appkeys import CLOCK, EVENTS, HOLDS, INVENTORY
from ticketing.catalog import events
from ticketing.catalog.inventory import Inventory
from ticketing.catalog.store import EventStore
from ticketing.catalog.types import EventCreate, EventOut, EventPage, EventPatch, EventSearch, SeatMapOut
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.holds.store import HoldStore
from ticketing.ids import parse_event_id

api = Api(tag="events")


async def _read_large_body(request: web.Request, limit: int) -> bytes:
    """Seat maps exceed the general body limit: read this route's body under its own limit."""
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise errors.UnsupportedMediaType(f"expected application/json, got {ctype or 'nothing'}")
    if request.content_length is not None and request.content_length > limit:
        raise errors.PayloadTooLarge(f"body of {request.content_length} bytes exceeds the {limit} byte limit",
                                     limit_bytes=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"body exceeds the {limit} byte limit", limit_bytes=limit)
        chunks.append(chunk)
    return b"".join(chunks)


@api.post("/api/events", body=EventCreate, response=EventOut, status=201, errors=(401, 403), auth="bearer",
          summary="Create an event (organizer or admin); on sale at once unless draft")
async def create_event(request: web.Request) -> web.Response:
    # Refused before the (up to several MiB) body is read: an API client needs "events:write".
    principal = authorize_action(await authenticate(request), Action.EVENT_CREATE)
    raw = await _read_large_body(request, request.app[SETTINGS].event_body_max_bytes)
    body = decode_json(raw, EventCreate)
    event = await events.create_event(request.app[INVENTORY], principal, body)
    counts = await request.app[INVENTORY].holds.tier_counts(str(event.id)) if event.status == "on_sale" else None
    return json_response(events.event_out(event, counts), status=201,
                         headers={"Location": f"/api/events/{event.id}"})


@api.get("/api/events", query=EventSearch, response=EventPage, errors=(422, 429),
         summary="Search events on sale (keyset pagination through next_cursor)")
async def search_events(request: web.Request) -> web.Response:
    await rate_limit.enforce(request, "search")  # per client IP (the search is public)
    query = decode_query(request, EventSearch)
    return json_response(await events.search_events(request.app[INVENTORY], query))


@api.get("/api/events/{event_id}", response=EventOut, errors=(404,),
         summary="Event details, tiers with live available counts")
async def get_event(request: web.Request) -> web.Response:
    event_id = parse_event_id(request.match_info["event_id"])
    principal = await authenticate(request)
    return json_response(await events.get_event(request.app[INVENTORY], event_id, principal))


@api.get("/api/events/{event_id}/seats", response=SeatMapOut, errors=(404,),
         summary="Seat map with live state (free, held, sold)")
async def get_seats(request: web.Request) -> web.Response:
    event_id = parse_event_id(request.match_info["event_id"])
    principal = await authenticate(request)
    now_ms = request.app[CLOCK].now_ms()
    return json_response(await events.get_seat_map(request.app[INVENTORY], event_id, principal, now_ms))


@api.patch("/api/events/{event_id}", body=EventPatch, response=EventOut, errors=(401, 403, 404, 409),
           auth="bearer", summary="Update an event; status draft -> on_sale opens the sale")
async def patch_event(request: web.Request) -> web.Response:
    # Before the event is looked up: a caller who may change no event gets 403 for any id.
    principal = authorize_action(await authenticate(request), Action.EVENT_UPDATE)
    event_id = parse_event_id(request.match_info["event_id"])
    patch = await decode_body(request, EventPatch)
    event = await events.update_event(request.app[INVENTORY], principal, event_id, patch)
    return json_response(await events.get_event(request.app[INVENTORY], event.id, principal))


@api.delete("/api/events/{event_id}", response=EventOut, errors=(401, 403, 404), auth="bearer",
            summary="Cancel an event (holders are notified and refunded through the outbox)")
async def cancel_event(request: web.Request) -> web.Response:
    principal = authorize_action(await authenticate(request), Action.EVENT_CANCEL)
    event_id = parse_event_id(request.match_info["event_id"])
    now_ms = request.app[CLOCK].now_ms()
    event = await events.cancel_event(request.app[INVENTORY], principal, event_id, now_ms,
                                      AdmissionHooks(request.app[CALLS], request.app[KEYS]))
    return json_response(events.event_out(event, None))


async def inventory_ctx(app: web.Application) -> AsyncIterator[None]:
    """Builds the catalog/hold stores over the app's Redis and PostgreSQL (after redis_ctx, db_ctx)."""
    if CLOCK not in app:
        app[CLOCK] = SystemClock()
    app[HOLDS] = HoldStore(app[CALLS], app[KEYS])
    app[EVENTS] = EventStore(app[DB])
    app[INVENTORY] = Inventory(app[EVENTS], app[HOLDS], app[SETTINGS])
    yield
