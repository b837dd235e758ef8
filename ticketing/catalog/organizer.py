"""The organizer's own events: ``GET /api/organizer/events`` (the dashboard's start page).

Organizers see every event they organize in any status (drafts and cancelled ones included,
which the public search never shows); admins see everybody's, optionally narrowed to one
organizer. Newest first, keyset pages on the event id. Per event: status, date, venue,
capacity, tickets sold (PostgreSQL, the truth) and the waiting room gating it (Redis).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from rooms import sessions
from stagedoor.auth import require_principal
from stagedoor.errors import Forbidden
from stagedoor.openapi import Api
from stagedoor.policy import NO_RESOURCE, Action, Resource, authorize, authorize_action, is_allowed
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.web import CALLS, KEYS, decode_query, json_response
from ticketing.appkeys import EVENTS
from ticketing.catalog.store import EventStore

api = Api(tag="events")

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
EventStatus = Literal["draft", "on_sale", "sold_out", "cancelled"]


class OrganizerEventsQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: EventStatus | None = None
    organizer_id: Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)] | None = None  # admins only
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    cursor: Annotated[str, msgspec.Meta(pattern="^[1-9][0-9]{0,17}$")] | None = None


class OrganizerEvent(msgspec.Struct, kw_only=True):
    id: str
    organizer_id: str
    status: str
    title: str
    category: str
    city: str
    venue: str
    starts_at: datetime
    currency: str
    capacity: int       # seats + general-admission quantities
    sold: int           # tickets issued
    free: int           # capacity - sold (holds not subtracted: see /api/events/{id}/sales)
    room: str | None    # the waiting room gating the event, if any


class OrganizerEventPage(msgspec.Struct, kw_only=True):
    items: list[OrganizerEvent]
    next_cursor: str | None


async def list_organizer_events(events: EventStore, calls: RedisCalls, keys: RedisKeys, organizer_id: str | None,
                                query: OrganizerEventsQuery) -> OrganizerEventPage:
    """One page of events (``organizer_id`` None: everybody's)."""
    rows = await events.organizer_events(organizer_id, query.status, int(query.cursor) if query.cursor else None,
                                         query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    rooms = await sessions.rooms_of_events(calls, keys, [row["id"] for row in rows])
    items = [
        OrganizerEvent(
            id=row["id"], organizer_id=row["organizer_id"], status=row["status"], title=row["title"],
            category=row["category"], city=row["city"], venue=row["venue"], starts_at=row["starts_at"],
            currency=row["currency"], capacity=int(row["capacity"]), sold=int(row["sold"]),
            free=max(0, int(row["capacity"]) - int(row["sold"])), room=room,
        )
        for row, room in zip(rows, rooms, strict=True)
    ]
    return OrganizerEventPage(items=items, next_cursor=rows[-1]["id"] if more else None)


@api.get("/api/organizer/events", query=OrganizerEventsQuery, response=OrganizerEventPage,
         errors=(401, 403, 422), auth="bearer",
         summary="Your events in any status with sold/free counts and their room (admins: everybody's, "
                 "or one organizer's with organizer_id); newest first, keyset pages")
async def organizer_events(request: web.Request) -> web.Response:
    principal = authorize_action(await require_principal(request), Action.SALES_READ)
    query = decode_query(request, OrganizerEventsQuery)
    own = principal.user_id
    if is_allowed(principal, Action.SALES_READ, NO_RESOURCE):  # admins: anybody's events
        organizer_id = query.organizer_id
    else:
        # an organizer (or a client acting for one with sales:read) reads the sales of their own
        # events; asking for another organizer's list is 403
        asked = query.organizer_id
        same = asked is None or asked.lower() == (own or "").lower()
        authorize(principal, Action.SALES_READ, Resource(organizer_id=own if same else asked),
                  hidden=Forbidden("organizers list only their own events"))
        organizer_id = own
    app = request.app
    return json_response(await list_organizer_events(app[EVENTS], app[CALLS], app[KEYS], organizer_id, query))
