"""Tickets: who may fetch one, and its QR code (segno, rendered off the event loop)."""

from __future__ import annotations

import asyncio
import io

import segno

from stagedoor.auth import Principal
from stagedoor.formats import parse_uuid
from stagedoor.policy import Action, may_read
from ticketing.tickets.errors import TicketNotFound
from ticketing.tickets.store import TicketStore

QR_SCALE = 4
QR_BORDER = 2


def render_qr_svg(code: str) -> bytes:
    """SVG of the code as a QR (error correction M); CPU-bound, run it in an executor."""
    buffer = io.BytesIO()
    segno.make(code, error="m", micro=False).save(buffer, kind="svg", scale=QR_SCALE, border=QR_BORDER,
                                                  xmldecl=True, title="stagedoor ticket")
    return buffer.getvalue()


async def ticket_qr_svg(store: TicketStore, principal: Principal, ticket_id: str) -> bytes:
    """The QR of a ticket's signed code, for its buyer, the event's organizer or an admin."""
    row = await store.get_ticket(parse_uuid(ticket_id, TicketNotFound))
    if row is None or not may_read(principal, Action.TICKET_READ, row["user_id"], row["organizer_id"]):
        raise TicketNotFound(f"no ticket {ticket_id[:60]}")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, render_qr_svg, row["code"])
