"""Who may manage a room's event: the one place the admin API asks, per room. The table is
``stagedoor.policy`` (Action.ROOM_MANAGE): admins (the admin API key; an admin's API client
with scope rooms:write or admin) any room; an organizer (or their API client with scope
rooms:write) the rooms of events they organize. A room without an event, an unknown event or
a missing events table means "not theirs" (admission/admin.py answers it as it answers a
missing room, or 403 for an event a request names). Callers who may manage no room at all
were refused by the route before any lookup (``authorize_action``)."""

from __future__ import annotations

import asyncpg

from stagedoor.auth import Principal
from stagedoor.policy import Action, Resource, is_allowed

OWNER_SQL = "SELECT organizer_id::text FROM events WHERE id = $1"


async def event_organizer(db: asyncpg.Pool | None, event_id: str | None) -> str | None:
    if not event_id or db is None:
        return None
    try:
        owner: str | None = await db.fetchval(OWNER_SQL, int(event_id))
        return owner
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, ValueError):
        return None


async def may_manage_event(db: asyncpg.Pool | None, principal: Principal, event_id: str | None) -> bool:
    if is_allowed(principal, Action.ROOM_MANAGE):  # whoever's room (admins): no database round trip
        return True
    organizer = await event_organizer(db, event_id)
    return organizer is not None and is_allowed(principal, Action.ROOM_MANAGE, Resource(organizer_id=organizer))
