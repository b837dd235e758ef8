"""Authorization policy: may this principal do this action to that resource?

One table for every service (``POLICY``: action x role -> relation, plus the scope an API
client needs). Handlers authenticate (``stagedoor.auth``), then ask here twice:

1. **before any lookup**, :func:`authorize_action`: may the caller do this action to anything
   at all? A caller who may not (a customer checking tickets in, a door scanner changing an
   event) gets 403 whatever the id or code it sent, and nothing is read.
2. **after loading the resource's ownership facts**, :func:`authorize` (or :func:`is_allowed`):
   may it do it to *this* one? Handlers pass ``hidden=`` the same not-found error a missing
   resource gets when telling "exists but not yours" apart from "does not exist" would leak
   something (docs/security.md lists the choice per endpoint).

Handlers never test roles or scopes themselves; ``Principal`` has no role predicates.

Roles: ``customer`` is every user account (and the owner of an API client), ``organizer``
and ``admin`` come from the account's roles; the admin API key is an admin.

Some actions are for user accounts only (``account``: a hold, a purchase, a profile is
someone's): the admin API key and API clients never do them.

Relations (what a role's grant covers):

- ``ANY``: whoever's it is (admins; an organizer's own listings, filtered to their events);
- ``OWN``: things the caller's user owns (their holds, orders, tickets);
- ``ORGANIZER``: things of events the caller's user organizes;
- ``NEVER``: nothing.

API clients act for their owner (the owner's roles, in the token) and only within their
scopes: a client's rights are the intersection of its owner's rights and its scopes. An
action is open to a client only when the client holds the action's ``scope``; actions
without a scope (shopping, profiles, accounts) are not open to clients. The scope "admin"
stands for every scope and, for a client of an admin (or an ownerless client registered
with it), for the admin role in full.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

import msgspec

from stagedoor.auth import ROLES, Principal
from stagedoor.errors import Forbidden, StagedoorError, Unauthorized


class Action(StrEnum):
    # catalog and organizer work
    EVENT_CREATE = "event:create"        # the new event's organizer is the resource
    EVENT_READ = "event:read"            # an event in any status (drafts are hidden from everybody else)
    EVENT_UPDATE = "event:update"        # also the event's discount codes
    EVENT_CANCEL = "event:cancel"
    ROOM_MANAGE = "room:manage"          # admin API: create/update/pause/evict/stats of an event's room
    ROOM_LIST = "room:list"              # rooms with stats (admin API; organizers see their own events' rooms)
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


class Relation(StrEnum):
    NEVER = "never"
    OWN = "own"
    ORGANIZER = "organizer"
    ANY = "any"


NEVER, OWN, ORGANIZER, ANY = Relation.NEVER, Relation.OWN, Relation.ORGANIZER, Relation.ANY

# Scopes an API client may be registered with ("admin" stands for every other one).
SCOPES = ("events:write", "rooms:write", "checkin", "sales:read", "orders:read", "admin")
ADMIN_SCOPE = "admin"


class Rule(msgspec.Struct, frozen=True):
    """One row of the table: the client scope that opens the action, each role's relation, and
    whether only a user account may do it (the hold, purchase or profile is someone's: the admin
    API key and API clients never)."""

    scope: str | None
    customer: Relation
    organizer: Relation
    admin: Relation
    account: bool = False

    def relation(self, role: str) -> Relation:
        return {"customer": self.customer, "organizer": self.organizer, "admin": self.admin}[role]


_TABLE: dict[Action, Rule] = {
    #                           client scope    cust.  organizer  admin  account only
    Action.EVENT_CREATE:   Rule("events:write", NEVER, ORGANIZER, ANY),
    Action.EVENT_READ:     Rule("events:write", NEVER, ORGANIZER, ANY),
    Action.EVENT_UPDATE:   Rule("events:write", NEVER, ORGANIZER, ANY),
    Action.EVENT_CANCEL:   Rule("events:write", NEVER, ORGANIZER, ANY),
    Action.ROOM_MANAGE:    Rule("rooms:write",  NEVER, ORGANIZER, ANY),
    Action.ROOM_LIST:      Rule("rooms:write",  NEVER, ANY,       ANY),
    Action.CHECKIN:        Rule("checkin",      NEVER, ORGANIZER, ANY),
    Action.SALES_READ:     Rule("sales:read",   NEVER, ORGANIZER, ANY),
    Action.HOLD_CREATE:    Rule(None,           ANY,   NEVER,     ANY,   account=True),
    Action.HOLD_READ:      Rule(None,           OWN,   NEVER,     ANY),
    Action.HOLD_RELEASE:   Rule(None,           OWN,   NEVER,     ANY),
    Action.PURCHASE:       Rule(None,           OWN,   NEVER,     OWN,   account=True),  # nobody buys another's hold
    Action.ORDER_READ:     Rule("orders:read",  OWN,   ORGANIZER, ANY),
    Action.TICKET_READ:    Rule("orders:read",  OWN,   ORGANIZER, ANY),
    Action.PROFILE_READ:   Rule(None,           ANY,   NEVER,     ANY,   account=True),  # "me": their own account
    Action.USER_READ:      Rule(None,           NEVER, NEVER,     ANY),
    Action.USER_MANAGE:    Rule(None,           NEVER, NEVER,     ANY),
    Action.CLIENT_MANAGE:  Rule(None,           NEVER, NEVER,     ANY),
}
POLICY: Mapping[Action, Rule] = MappingProxyType(_TABLE)


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """Ownership facts of one thing: ``owner_id`` the user who owns it (the customer of a hold,
    order or ticket), ``organizer_id`` the organizer of the event it belongs to."""

    owner_id: str | None = None
    organizer_id: str | None = None


NO_RESOURCE = Resource()


def effective_roles(principal: Principal) -> frozenset[str]:
    """The roles the table is read with: every user account (a client's owner too) is a customer."""
    roles = principal.roles & frozenset(ROLES)
    if principal.user_id is not None:
        roles |= {"customer"}
    return roles


def _scope_opens(principal: Principal, rule: Rule, role: str) -> bool:
    """Whether the principal's scopes open ``role``'s grant of this rule (users and the admin key:
    always). A client needs the rule's scope ("admin" stands for every scope); a rule without a
    scope opens to a client only through the admin role, with scope "admin"."""
    if principal.kind != "client":
        return True
    if rule.scope is not None and (rule.scope in principal.scopes or ADMIN_SCOPE in principal.scopes):
        return True
    return role == "admin" and ADMIN_SCOPE in principal.scopes


def _covers(relation: Relation, principal: Principal, resource: Resource) -> bool:
    if relation is ANY:
        return True
    uid = principal.user_id
    if uid is None or relation is NEVER:
        return False
    if relation is OWN:
        return resource.owner_id is not None and resource.owner_id == uid
    return resource.organizer_id is not None and resource.organizer_id == uid  # ORGANIZER


def _grants(principal: Principal, action: Action) -> list[Relation]:
    rule = POLICY[action]
    if rule.account and principal.kind != "user":
        return []
    out = []
    for role in effective_roles(principal):
        relation = rule.relation(role)
        if relation is not NEVER and _scope_opens(principal, rule, role):
            out.append(relation)
    return out


def can_ever(principal: Principal, action: Action) -> bool:
    """Whether the principal may do ``action`` to anything at all (the check before any lookup)."""
    return bool(_grants(principal, action))


def is_allowed(principal: Principal, action: Action, resource: Resource = NO_RESOURCE) -> bool:
    """Whether the principal may do ``action`` to ``resource``. With no resource: whoever's it is
    (only an ``ANY`` grant answers yes: admins, an organizer's own listings)."""
    return any(_covers(relation, principal, resource) for relation in _grants(principal, action))


def authorize_action(principal: Principal | None, action: Action) -> Principal:
    """Before any lookup: 401 without a principal, 403 when it may do ``action`` to nothing."""
    if principal is None:
        raise Unauthorized("a bearer token is required")
    if not can_ever(principal, action):
        raise Forbidden(f"not allowed to {action.value}")
    return principal


def authorize(principal: Principal | None, action: Action, resource: Resource = NO_RESOURCE, *,
              hidden: StagedoorError | None = None) -> Principal:
    """Return the principal when allowed; 401 without one. Refused: ``hidden`` when given (the
    error a missing resource gets, so nothing tells that it exists), else 403."""
    if principal is None:
        raise Unauthorized("a bearer token is required")
    if not is_allowed(principal, action, resource):
        if hidden is not None:
            raise hidden
        raise Forbidden(f"not allowed to {action.value} this resource")
    return principal


def may_read(principal: Principal, action: Action, owner_id: str | None, organizer_id: str | None) -> bool:
    """Whether the principal may read a thing owned by ``owner_id`` of an event organized by
    ``organizer_id`` (owner, the event's organizer, admin; clients by scope). Readers that may
    not see it get a 404, so nothing leaks that it exists."""
    return is_allowed(principal, action, Resource(owner_id=owner_id, organizer_id=organizer_id))
