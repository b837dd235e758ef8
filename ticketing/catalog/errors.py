"""Errors of the catalog: events, their definitions and status changes.

Each says what happened; stagedoor/problems.py maps the category to the status.
"""

from __future__ import annotations

from stagedoor.errors import Conflict, Forbidden, InvalidInput


class NotEventOwner(Forbidden):
    code = "not-event-owner"
    title = "Only the event's organizer or an admin may do this"


class InvalidEvent(InvalidInput):
    code = "invalid-event"
    title = "Invalid event definition"


class InvalidStatusChange(Conflict):
    code = "invalid-status-change"
    title = "That status change is not allowed"


class InvalidCursor(InvalidInput):
    code = "invalid-cursor"
    title = "Invalid pagination cursor"
