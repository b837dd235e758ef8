"""HTTP handlers of tickets: the QR code of a ticket and check-in at the door."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor.auth import require_principal
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize_action
from stagedoor.web import DB, KEYRING, decode_body, json_response
from ticketing.appkeys import METRICS, TICKETS
from ticketing.tickets import checkin
from ticketing.tickets import qr as tickets
from ticketing.tickets.store import TicketStore

api = Api(tag="orders")


async def tickets_ctx(app: web.Application) -> AsyncIterator[None]:
    """Builds the tickets' store (after db_ctx)."""
    app[TICKETS] = TicketStore(app[DB])
    yield


@api.get("/api/tickets/{ticket_id}/qr.svg", response="svg", response_content_type="image/svg+xml",
         errors=(401, 403, 404), auth="bearer", summary="QR code (SVG) of the ticket's signed code")
async def ticket_qr(request: web.Request) -> web.Response:
    principal = authorize_action(await require_principal(request), Action.TICKET_READ)
    svg = await tickets.ticket_qr_svg(request.app[TICKETS], principal, request.match_info["ticket_id"])
    return web.Response(body=svg, content_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"})


@api.post("/api/checkin", body=checkin.CheckInRequest, response=checkin.CheckInResult, errors=(401, 403, 404, 409),
          auth="bearer", summary="Check a ticket code in: 200 first scan, 409 already, 404 unknown or forged (or of "
                                 "an event you may not check in at); 403 for a caller who may check in at no event")
async def check_in(request: web.Request) -> web.Response:
    # Before the body is read or any code looked at: 403 for a caller who may check in nowhere.
    principal = authorize_action(await require_principal(request), Action.CHECKIN)
    body = await decode_body(request, checkin.CheckInRequest)
    app = request.app
    result = await checkin.check_in(app[TICKETS], app[KEYRING], app[METRICS], principal,
                                    body.code)
    return json_response(result)
