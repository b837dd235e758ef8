"""Errors of the waiting list; stagedoor/problems.py maps each category to its status."""

from __future__ import annotations

from stagedoor.errors import Conflict, Gone, NotFound


class EventNotSoldOut(Conflict):
    code = "event-not-sold-out"
    title = "The event is not sold out"

    def __init__(self, status: str) -> None:
        super().__init__(f"the waiting list is open only while the event is sold out (it is {status})",
                         event_status=status)


class AlreadyOnWaitlist(Conflict):
    code = "already-on-waitlist"
    title = "You are already on this event's waiting list"


class NotOnWaitlist(NotFound):
    code = "not-on-waitlist"
    title = "You are not on this event's waiting list"


class OfferNotFound(NotFound):
    code = "offer-not-found"
    title = "No such offer"


class OfferExpired(Gone):
    code = "offer-expired"
    title = "The offer has expired"

    def __init__(self, status: str) -> None:
        super().__init__(f"the offer is {status}: its tickets passed to the next fan on the list",
                         offer_status=status)
