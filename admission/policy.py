"""Who may manage a room: the one place the admin API asks. Admins (and the admin API key)
any room; an organizer (or their API client with scope rooms:write) the rooms of events they
own, per ``stagedoor.policy`` (Action.ROOM_MANAGE). A room without an event, an unknown
event or a missing events table means "not the owner" (403)."""

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
    if is_allowed(principal, Action.ROOM_MANAGE):  # admins: no database round trip
        return True
    organizer = await event_organizer(db, event_id)
    return organizer is not None and is_allowed(principal, Action.ROOM_MANAGE, Resource(organizer_id=organizer))
