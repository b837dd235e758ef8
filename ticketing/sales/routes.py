"""HTTP handlers of live sales for organizers, and the cleanup context that builds their stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor.auth import require_principal
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize_action
from stagedoor.web import DB, KEYS, REDIS, decode_query, json_response
from ticketing.appkeys import DASHBOARD_BACKLOG, HOLDS, ORDERS, SALES_COUNTERS
from ticketing.ids import parse_event_id
from ticketing.sales import sales
from ticketing.sales.counters import GroupBacklog, SalesCounterStore

api = Api(tag="orders")


async def sales_ctx(app: web.Application) -> AsyncIterator[None]:
    """Builds the dashboard counters' store and backlog reader (after redis_ctx, db_ctx)."""
    app[SALES_COUNTERS] = SalesCounterStore(app[DB])
    app[DASHBOARD_BACKLOG] = GroupBacklog(app[REDIS], app[KEYS])
    yield


@api.get("/api/events/{event_id}/sales", query=sales.SalesQuery, response=sales.SalesOut,
         errors=(401, 403, 404), auth="bearer",
         summary="Live sales: sold, held, free, revenue, orders over time, funnel counters and their freshness "
                 "(organizer, admin)")
async def event_sales(request: web.Request) -> web.Response:
    principal = authorize_action(await require_principal(request), Action.SALES_READ)  # before the lookup
    event_id = parse_event_id(request.match_info["event_id"])
    query = decode_query(request, sales.SalesQuery)
    app = request.app
    return json_response(await sales.event_sales(app[ORDERS], app[HOLDS], app[SALES_COUNTERS], app[DASHBOARD_BACKLOG],
                                                 principal, event_id, query))
