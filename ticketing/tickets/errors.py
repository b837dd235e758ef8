"""Errors of tickets and check-in.

Each says what happened; stagedoor/problems.py maps the category to the status.
"""

from __future__ import annotations

from stagedoor.errors import Conflict, NotFound


class TicketNotFound(NotFound):
    code = "ticket-not-found"
    title = "Unknown or forged ticket"


class AlreadyCheckedIn(Conflict):
    code = "already-checked-in"
    title = "Ticket already checked in"
