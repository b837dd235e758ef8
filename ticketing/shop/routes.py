"""HTML pages of the shop and the organizer dashboard (server-rendered, JS in /static files).

The pages are shells around the JSON API: listings and the seat map are rendered on the
server (usable without JavaScript, with text alternatives), and the page scripts call the
same public API a third-party client would, with the user's bearer token from
sessionStorage. The organizer's room settings go to the admission service through a small
same-origin proxy (``/organizer/api/rooms/{room}``) so no CORS is needed.
"""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
from aiohttp import web

from rooms import sessions
from stagedoor import errors
from stagedoor.pages import render, tr
from stagedoor.payment_pages import card_field, checkout_csp, no_real_money_notice
from stagedoor.web import CALLS, KEYS, SETTINGS
from ticketing.appkeys import CLOCK, INVENTORY
from ticketing.catalog import events
from ticketing.catalog.types import EventSearch
from ticketing.ids import parse_event_id
from ticketing.shop.seat_map import layout_seat_map, tier_colours

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

ROOM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HOLD_ID_RE = re.compile(r"^[A-Za-z0-9_:.-]{1,80}$")
PROXY_TIMEOUT_S = 5.0
NO_STORE = {"Cache-Control": "no-store"}


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=body, content_type="text/html", status=status, headers={**NO_STORE, **(headers or {})})


def _page(request: web.Request, template: str, headers: dict[str, str] | None = None, **context: Any) -> web.Response:
    settings = request.app[SETTINGS]
    context.setdefault("waitingroom_url", settings.url_of("waitingroom"))
    return _html(render(template, path=request.path, test_mode=no_real_money_notice(settings), **context),
                 headers=headers)


# ---------------------------------------------------------------- shop

def _search_from_form(query: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The list page's form (empty fields omitted, dates as days, prices in major units)
    -> the API's EventSearch input, and the form values to show back."""
    form = {k: query.get(k, "").strip()[:200] for k in
            ("q", "category", "city", "from", "to", "min_price", "max_price", "available", "cursor")}
    raw: dict[str, Any] = {}
    for name in ("q", "category", "city", "cursor"):
        if form[name]:
            raw[name] = form[name]
    for name, suffix, label in (("from", "T00:00:00Z", "filter_from"), ("to", "T23:59:59Z", "filter_to")):
        if form[name]:
            try:
                raw[name] = date.fromisoformat(form[name]).isoformat() + suffix
            except ValueError:
                raise FilterInvalid(tr("filter_bad_date", field=tr(label))) from None
    for name in ("min_price", "max_price"):
        if form[name]:
            try:
                raw[name] = round(float(form[name]) * 100)
            except (ValueError, OverflowError):
                raise FilterInvalid(tr("filter_bad_number", field=tr("filter_" + name))) from None
    if form["available"]:
        raw["available"] = True
    raw["limit"] = 12
    return raw, form


class FilterInvalid(ValueError):
    """A filter of the list page the visitor should correct (the message is shown as is)."""


@routes.get("/")
async def event_list(request: web.Request) -> web.Response:
    error = None
    page = None
    try:
        raw, form = _search_from_form(request.query)
        search = msgspec.convert(raw, EventSearch, strict=False)
        page = await events.search_events(request.app[INVENTORY], search)
    except (ValueError, OverflowError, msgspec.ValidationError, errors.InvalidInput) as exc:
        form = {k: request.query.get(k, "")[:200] for k in request.query}
        error = str(exc)[:200] if isinstance(exc, FilterInvalid) else _filter_problem(exc)
    next_query = None
    if page is not None and page.next_cursor:
        params = {k: v for k, v in form.items() if v and k != "cursor"}
        params["cursor"] = page.next_cursor
        next_query = "?" + urlencode(params)
    return _page(request, "shop_list.html", page=page, form=form, error=error, next_query=next_query,
                 is_paged=bool(form.get("cursor")))


def _filter_problem(exc: Exception) -> str:
    """A short, visitor-facing reading of a rejected search (bounds, forged cursor)."""
    if isinstance(exc, msgspec.ValidationError):
        text = str(exc)
        field = text.rsplit("$.", 1)[-1].strip("` ") if "$." in text else ""
        label = tr("filter_" + field) if field and tr("filter_" + field) != "filter_" + field else field
        return f"{label}: {text.split(' - at ')[0]}" if label else text.split(" - at ")[0]
    return str(exc)[:200]


async def _event_room(request: web.Request, event_id: str) -> str | None:
    return await sessions.room_of_event(request.app[CALLS], request.app[KEYS], event_id)


def _not_found(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = render("not_found.html", path=request.path, waitingroom_url=settings.url_of("waitingroom"),
                  test_mode=no_real_money_notice(settings))
    return _html(body, status=404)


@routes.get("/events/{event_id}")
async def event_page(request: web.Request) -> web.Response:
    inventory = request.app[INVENTORY]
    try:
        event_id = parse_event_id(request.match_info["event_id"])
        event = await events.get_event(inventory, event_id, None)
    except errors.NotFound:
        return _not_found(request)
    colours = tier_colours([t.code for t in event.tiers])
    layout = None
    too_large = False
    if event.seated:
        seat_map = await events.get_seat_map(inventory, event_id, None, request.app[CLOCK].now_ms())
        layout = layout_seat_map(seat_map.seats, colours)
        too_large = layout is None and bool(seat_map.seats)
    room = await _event_room(request, str(event_id))
    return _page(request, "shop_event.html", event=event, layout=layout, colours=colours, room=room,
                 ga_tiers=[t for t in event.tiers if t.quantity is not None or too_large], too_large=too_large)


@routes.get("/checkout/{hold_id}")
async def checkout_page(request: web.Request) -> web.Response:
    """The card field depends on the gateway (stagedoor/payment_pages.py): the mock's test tokens, or
    Stripe Elements, whose script, frames and API calls this page's own CSP allows."""
    hold_id = request.match_info["hold_id"]
    if not HOLD_ID_RE.match(hold_id):
        raise web.HTTPNotFound()
    settings = request.app[SETTINGS]
    return _page(request, "checkout.html", headers={"Content-Security-Policy": checkout_csp(settings)},
                 hold_id=hold_id, card=card_field(settings))


@routes.get("/orders/{order_id}")
async def order_page(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    if not HOLD_ID_RE.match(order_id):
        raise web.HTTPNotFound()
    return _page(request, "order.html", order_id=order_id)


@routes.get("/me/orders")
async def my_orders_page(request: web.Request) -> web.Response:
    return _page(request, "my_orders.html")


@routes.get("/me/offers")
async def my_offers_page(request: web.Request) -> web.Response:
    """The fan's waiting-list offers (GET /api/users/me/offers, fetched by waitlist.js) with a countdown
    and an Accept button that leads into the ordinary checkout."""
    return _page(request, "my_offers.html")


@routes.get("/signin")
async def signin_page(request: web.Request) -> web.Response:
    return _page(request, "signin.html")


@routes.get("/signup")
async def signup_page(request: web.Request) -> web.Response:
    return _page(request, "signup.html")


# ---------------------------------------------------------------- organizer

@routes.get("/organizer")
async def organizer_home(request: web.Request) -> web.Response:
    """The organizer's start page: their events (GET /api/organizer/events, fetched by organizer.js)."""
    return _page(request, "organizer_home.html")


@routes.get("/organizer/new")
async def organizer_new_event(request: web.Request) -> web.Response:
    return _page(request, "organizer_new.html")


@routes.get("/organizer/events/{event_id}")
async def organizer_event(request: web.Request) -> web.Response:
    event_id = parse_event_id(request.match_info["event_id"])
    room = await _event_room(request, str(event_id))
    return _page(request, "organizer_event.html", event_id=event_id, room=room)


@routes.get("/organizer/checkin")
async def organizer_checkin(request: web.Request) -> web.Response:
    return _page(request, "organizer_checkin.html")


@routes.route("*", "/organizer/api/rooms/{room}")
async def room_proxy(request: web.Request) -> web.Response:
    """Forward GET/PUT/PATCH of one room to the admission admin API with the caller's own
    bearer token (admission decides who may manage the room)."""
    if request.method not in ("GET", "PUT", "PATCH"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "PATCH"])
    room = request.match_info["room"]
    if not ROOM_ID_RE.match(room):
        raise web.HTTPNotFound()
    settings = request.app[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.PayloadTooLarge(f"body exceeds the {limit} byte limit", limit_bytes=limit)
    body = await request.read() if request.method != "GET" else None
    headers = {"Content-Type": "application/json"}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"][:4096]
    url = f"{settings.url_of('admission').rstrip('/')}/admin/rooms/{room}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S)) as session, \
                session.request(request.method, url, data=body, headers=headers) as upstream:
            payload = await upstream.read()
            ctype = upstream.headers.get("Content-Type", "application/json")
            return web.Response(body=payload, status=upstream.status, headers={"Content-Type": ctype, **NO_STORE})
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("room_proxy_failed", extra={"room": room, "error": type(exc).__name__})
        raise errors.DependencyUnavailable("the admission service is not reachable", retry_after_s=2) from None
