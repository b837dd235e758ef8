"""Errors of the waiting room and the admission controller (rendered as problem+json)."""

from __future__ import annotations

from stagedoor.errors import Conflict, NotFound, Unauthorized


class RoomNotFound(NotFound):
    code = "room-not-found"
    title = "No such waiting room"


class RoomClosed(Conflict):
    code = "room-closed"
    title = "The waiting room is closed"


class RoomNotOpen(Conflict):
    code = "room-not-open"
    title = "The waiting room is not open yet"


class RoomSoldOut(Conflict):
    code = "room-sold-out"
    title = "The event is sold out"


class EventAlreadyGated(Conflict):
    code = "event-already-gated"
    title = "The event already has a waiting room"


class VisitorEvicted(Unauthorized):
    code = "visitor-evicted"
    title = "This queue place was revoked"


class VisitorNotFound(NotFound):
    code = "visitor-not-found"
    title = "No such visitor in this room"

