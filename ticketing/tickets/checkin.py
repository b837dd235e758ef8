"""Check-in at the door: a ticket code is accepted once.

Authorization comes first: the route refuses with 403 a caller who may check in at no event
at all (a customer, an API client without the "checkin" scope), whatever the code, before the
body is read. Then the code's signature is checked (offline-verifiable,
ticketing/tickets/codes.py): a forged code is 404 before any query. A genuine code of a ticket
that was never sold, and a genuine code of an event the caller may not check in at (another
organizer's), get that very same 404 (same type, title and detail), so the answer never tells
such a caller whether a code is real. Then one statement marks the ticket
checked in only if it was not, so of two scanners racing on one ticket exactly one gets
200 and the other 409. The same statement writes the ``TicketCheckedIn`` outbox row (only for
the scan that checked the ticket in; the ticket id is the deterministic outbox id's key).
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from stagedoor.auth import Principal
from stagedoor.formats import rfc3339
from stagedoor.keys import KeyRing
from stagedoor.policy import Action, Resource, is_allowed
from ticketing.metrics import TicketingMetrics
from ticketing.tickets.codes import MAX_CODE_LENGTH, verify_ticket_code
from ticketing.tickets.errors import AlreadyCheckedIn, TicketNotFound
from ticketing.tickets.store import TicketStore

CHECKIN_NAMESPACE = uuid.UUID("3b0f4a55-1f0e-4a6b-9f61-2c4a7f3e0d18")
# One detail for every code the caller gets no further with: forged, never sold, or another's event.
UNKNOWN_CODE = "unknown or forged ticket code"


class CheckInRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CODE_LENGTH)]


class CheckInResult(msgspec.Struct, frozen=True, kw_only=True):
    ticket_id: str
    event_id: str
    seat: str | None
    tier: str
    checked_in_at: str


async def check_in(store: TicketStore, keyring: KeyRing, metrics: TicketingMetrics, principal: Principal,
                   code: str) -> CheckInResult:
    claims = verify_ticket_code(keyring, code)
    if claims is None:
        metrics.checkins_total.labels("forged").inc()
        raise TicketNotFound(UNKNOWN_CODE)
    ticket = await store.get_ticket(claims.ticket_id)
    if ticket is None or str(ticket["event_id"]) != claims.event_id:
        metrics.checkins_total.labels("unknown").inc()
        raise TicketNotFound(UNKNOWN_CODE)
    if not is_allowed(principal, Action.CHECKIN, Resource(organizer_id=ticket["organizer_id"])):
        metrics.checkins_total.labels("forbidden").inc()  # operators tell these apart; the caller cannot
        raise TicketNotFound(UNKNOWN_CODE)
    row = await store.check_in(claims.ticket_id, int(claims.event_id),
                               uuid.uuid5(CHECKIN_NAMESPACE, claims.ticket_id))
    if row is None:  # pragma: no cover - the ticket existed a moment ago; tickets are never deleted
        raise TicketNotFound("unknown ticket")
    if row["now"] is None:
        metrics.checkins_total.labels("already").inc()
        if row["status"] != "confirmed":
            raise AlreadyCheckedIn(f"the ticket's order is {row['status']}", ticket_id=claims.ticket_id)
        first = row["before"]
        raise AlreadyCheckedIn("ticket already checked in", ticket_id=claims.ticket_id,
                               checked_in_at=rfc3339(first) if first else None)
    metrics.checkins_total.labels("ok").inc()
    return CheckInResult(ticket_id=claims.ticket_id, event_id=claims.event_id, seat=row["seat_id"], tier=row["tier"],
                         checked_in_at=rfc3339(row["now"]))
