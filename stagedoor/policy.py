"""Authorization policy: may this principal do this action to that resource?

One table for every service. Handlers authenticate (``stagedoor.auth``), load the resource's
ownership facts, and call :func:`authorize`; they never test roles themselves.

- admins (role admin, the admin API key, an ownerless API client with scope "admin")
  may do everything;
- organizers manage only their own events, rooms, check-ins and sales;
- customers (any signed-in user) see and change only their own holds, orders and
  tickets; the organizer of an event may also read its orders and tickets;
- API clients act for their owner (owner's roles) and only within their scopes
  (``SCOPE_FOR``): an organizer's client with "checkin" may check in at the organizer's
  events and do nothing else.

A resource is described by :class:`Resource`: ``owner_id`` is the user who owns it (the
customer for holds/orders/tickets, the organizer for events/rooms), ``organizer_id`` the
organizer of the event it belongs to.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from stagedoor.auth import Principal
from stagedoor.errors import Forbidden, Unauthorized


class Action(StrEnum):
    # catalog and organizer work
    EVENT_CREATE = "event:create"
    EVENT_UPDATE = "event:update"
    EVENT_CANCEL = "event:cancel"
    ROOM_MANAGE = "room:manage"          # admin API: create/update/pause/evict/stats of an event's room
    CHECKIN = "checkin"
    SALES_READ = "sales:read"
    # customers
    HOLD_CREATE = "hold:create"
    HOLD_READ = "hold:read"
    HOLD_RELEASE = "hold:release"
    PURCHASE = "purchase"
    ORDER_READ = "order:read"
    TICKET_READ = "ticket:read"
    # accounts
    PROFILE_READ = "profile:read"
    USER_READ = "user:read"              # another user's account (admin portal)
    USER_MANAGE = "user:manage"          # roles, block/unblock
    CLIENT_MANAGE = "client:manage"      # register/revoke API clients
    ROOM_LIST = "room:list"              # rooms with stats (admin API; organizers see their own events' rooms)


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    owner_id: str | None = None
    organizer_id: str | None = None


NO_RESOURCE = Resource()

# The scope an API client needs for an action; actions absent here are never open to clients
# (only "admin"-scoped clients, which count as admins, reach them).
SCOPE_FOR: dict[Action, str] = {
    Action.EVENT_CREATE: "events:write",
    Action.EVENT_UPDATE: "events:write",
    Action.EVENT_CANCEL: "events:write",
    Action.ROOM_MANAGE: "rooms:write",
    Action.ROOM_LIST: "rooms:write",
    Action.CHECKIN: "checkin",
    Action.SALES_READ: "sales:read",
    Action.ORDER_READ: "orders:read",
    Action.TICKET_READ: "orders:read",
}

_ORGANIZER_OF_EVENT = {Action.EVENT_UPDATE, Action.EVENT_CANCEL, Action.ROOM_MANAGE, Action.CHECKIN,
                       Action.SALES_READ}
_OWNER_ONLY = {Action.HOLD_READ, Action.HOLD_RELEASE}
_OWNER_OR_ORGANIZER = {Action.ORDER_READ, Action.TICKET_READ}
_ANY_USER = {Action.HOLD_CREATE, Action.PURCHASE, Action.PROFILE_READ}
_ADMIN_ONLY = {Action.USER_READ, Action.USER_MANAGE, Action.CLIENT_MANAGE}


def _is_admin(principal: Principal) -> bool:
    if principal.kind == "client":
        return "admin" in principal.scopes and (principal.on_behalf_of is None or principal.is_admin)
    return principal.is_admin


def is_allowed(principal: Principal, action: Action, resource: Resource = NO_RESOURCE) -> bool:
    if _is_admin(principal):
        return True
    if principal.kind == "client":
        needed = SCOPE_FOR.get(action)
        if needed is None or needed not in principal.scopes:
            return False
    uid = principal.user_id
    if uid is None or action in _ADMIN_ONLY:
        return False
    if action in (Action.EVENT_CREATE, Action.ROOM_LIST):  # a listing is filtered to the caller's own
        return "organizer" in principal.roles
    if action in _ORGANIZER_OF_EVENT:
        organizer = resource.organizer_id or resource.owner_id
        return "organizer" in principal.roles and organizer is not None and organizer == uid
    if action in _OWNER_ONLY:
        return principal.kind == "user" and resource.owner_id == uid
    if action in _OWNER_OR_ORGANIZER:
        if principal.kind == "user" and resource.owner_id == uid:
            return True
        return "organizer" in principal.roles and resource.organizer_id is not None and resource.organizer_id == uid
    if action in _ANY_USER:
        return principal.kind == "user"
    return False


def authorize(principal: Principal | None, action: Action, resource: Resource = NO_RESOURCE) -> Principal:
    """Return the principal when allowed; 401 without one, 403 otherwise."""
    if principal is None:
        raise Unauthorized("a bearer token is required")
    if not is_allowed(principal, action, resource):
        raise Forbidden(f"not allowed to {action.value} this resource")
    return principal


def may_read(principal: Principal, action: Action, owner_id: str | None, organizer_id: str | None) -> bool:
    """Whether the principal may read a thing owned by ``owner_id`` of an event organized by
    ``organizer_id`` (owner, the event's organizer, admin; clients by scope). Readers that may
    not see it get a 404, so nothing leaks that it exists."""
    return is_allowed(principal, action, Resource(owner_id=owner_id, organizer_id=organizer_id))
