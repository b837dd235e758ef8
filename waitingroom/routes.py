"""HTTP handlers of the waiting room: thin, they parse, call the domain, encode."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from aiohttp import web
from aiohttp_sse import sse_response
from redis.exceptions import RedisError

from rooms.errors import RoomNotFound
from stagedoor import pow as proof_of_work
from stagedoor.auth import bearer_token
from stagedoor.edge import stream_headers
from stagedoor.errors import RateLimited, StagedoorError, redis_unavailable_reason
from stagedoor.hot_http import HotRequest, HotResponse
from stagedoor.openapi import Api
from stagedoor.queue_tokens import InvalidQueueToken, QueueTokenClaims
from stagedoor.rate_limit import enforce
from stagedoor.security import set_cookie
from stagedoor.web import KEYRING, SETTINGS, decode_body, decode_json, hot_json, json_response
from waitingroom.appkeys import PAGES, PULSES, ROOM, SSE_STOP
from waitingroom.queue import JoinOut, PlaceNotLive, StatusOut, WaitingRoom
from waitingroom.sse_pulse import SSE_PULSE_S, Watch

api = Api(tag="waiting room")

SSE_POSITION_EVERY_S = 1.0  # position-only changes at most once a second per visitor
# a stream reads its own status at least this often: that read is its heartbeat, and under the
# 5 s heartbeat bucket (rooms/queue_store.py) every bucket of an open stream holds its bit
SSE_CHECK_MAX_S = 4.0
TERMINAL_STATES = ("admitted", "expired", "sold_out", "closed")
NO_STORE = {"Cache-Control": "no-store"}


# An address for the "it is your turn" e-mail: optional, bounded, validated, kept next to the
# visitor's place for the queue token's lifetime, deleted on admission, never logged.
VisitorEmail = Annotated[str, msgspec.Meta(
    min_length=6, max_length=254, description="optional: e-mail me when it is my turn",
    pattern=r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")]


class JoinBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pow: proof_of_work.PowSolution | None = None
    email: VisitorEmail | None = None


def cookie_name(room: str) -> str:
    return f"sdq_{room}"


def _presented_token(request: web.Request | HotRequest, room: str) -> tuple[str | None, bool]:
    """(token, from_bearer): Authorization: Bearer wins over the cookie."""
    token = bearer_token(request)
    if token is not None:
        return token, True
    if "Cookie" not in request.headers:  # a first join, an API client: no cookie jar to parse
        return None, False
    return request.cookies.get(cookie_name(room)), False


def _claims(request: web.Request | HotRequest, room: str, wr: WaitingRoom, now: float) -> QueueTokenClaims:
    token, _ = _presented_token(request, room)
    return wr.verify(room, token, now)


def _held_cookie(request: web.Request | HotRequest, room: str, wr: WaitingRoom, now: float) -> QueueTokenClaims | None:
    """The claims of a valid queue cookie for ``room`` that came with the request, else None."""
    if "Cookie" not in request.headers:
        return None
    token = request.cookies.get(cookie_name(room))
    if not token:
        return None
    try:
        return wr.verify(room, token, now)
    except InvalidQueueToken:
        return None  # a stale or forged cookie just means "join afresh"


def _set_queue_cookie(response: web.StreamResponse | HotResponse, request: web.Request | HotRequest, room: str,
                      token: str) -> None:
    settings = request.app[SETTINGS]
    set_cookie(response, settings, cookie_name(room), token, max_age_s=settings.queue_token_ttl_s, samesite="Lax")


async def _join(request: web.Request | HotRequest, room: str, body: JoinBody) -> tuple[JoinOut, bool, bool]:
    """(result, created, sets_cookie). A valid queue cookie already held for the room is never
    replaced (sets_cookie False): it is the fan's place, whatever this request presents beside
    it (a Bearer token answers for its own visitor and leaves the cookie alone).

    Proof of work, when the room requires it, is asked of every join that does not find a live
    place: a new visitor, and a token whose place is gone (expired, abandoned, admitted and
    over): the join script says so before it writes anything (``live_only``), and only then is
    a solution verified and spent."""
    wr = request.app[ROOM]
    now = wr.clock()
    bearer = bearer_token(request)
    held = _held_cookie(request, room, wr, now)
    claims = wr.verify(room, bearer, now) if bearer is not None else held  # a bad Bearer token is a 401
    await enforce(request, "join", claims.visitor_id if claims else None)
    room_cfg = wr.fresh_room(room, now) or await wr.room(room, now)
    sets_cookie = held is None
    if room_cfg.pow_difficulty <= 0:
        out, created = await wr.join(room, claims, now, email=body.email, room=room_cfg)
        return out, created, sets_cookie
    if claims is not None:
        try:
            out, created = await wr.join(room, claims, now, email=body.email, room=room_cfg, live_only=True)
            return out, created, sets_cookie
        except PlaceNotLive:
            pass  # a place that is gone is rejoined as a new visitor joins: with a solution
    await proof_of_work.verify_for_app(request.app, body.pow, room=room, min_difficulty=room_cfg.pow_difficulty,
                                       now_ms=int(now * 1000))
    out, created = await wr.join(room, claims, now, email=body.email, room=room_cfg)
    return out, created, sets_cookie


async def _enforce_status(request: web.Request | HotRequest, wr: WaitingRoom, room: str, claims: QueueTokenClaims,
                          now: float) -> None:
    """The status rate limit. A poll it refuses is still the fan's heartbeat (fans behind one
    address share its per-IP bucket; their pages are open all the same): it is recorded before
    the 429 goes out."""
    try:
        await enforce(request, "status", claims.visitor_id)
    except RateLimited:
        await wr.heartbeat(room, claims.visitor_id, now)
        raise


# status first: the router tries a prefix's routes in registration order, and polls outnumber joins
@api.get("/api/rooms/{room}/status", response=StatusOut, errors=(401, 404, 429, 503), auth="bearer",
         summary="The visitor's state, position, ETA; the admission token once admitted")
async def status(request: web.Request) -> web.Response:
    return json_response(await _status(request, request.match_info["room"]), headers=NO_STORE)


async def _status(request: web.Request | HotRequest, room: str) -> StatusOut:
    wr = request.app[ROOM]
    now = wr.clock()
    claims = _claims(request, room, wr, now)
    await _enforce_status(request, wr, room, claims, now)
    return await wr.status(room, claims, now)


@api.post("/api/rooms/{room}/join", body=JoinBody, response=JoinOut, status=201,
          errors=(401, 403, 404, 409, 422, 429, 503),
          summary="Join the queue (200 with the same place when the presented queue token already holds one; "
                  "a valid queue cookie for the room is never replaced; 403 csrf-refused from another site)")
async def join(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    body = await decode_body(request, JoinBody)
    out, created, sets_cookie = await _join(request, room, body)
    response = json_response(out, status=201 if created else 200, headers=NO_STORE)
    if sets_cookie:
        _set_queue_cookie(response, request, room, out.queue_token)
    return response


# ---------------------------------------------------------------- the same two on the hot path
# (stagedoor/hot_http/: what reaches these is a plain request, its JSON body within the limit)

async def hot_status(request: HotRequest) -> HotResponse:
    return hot_json(await _status(request, request.match_info["room"]), headers=NO_STORE)


async def hot_join(request: HotRequest) -> HotResponse:
    room = request.match_info["room"]
    out, created, sets_cookie = await _join(request, room, decode_json(request.body, JoinBody))
    response = hot_json(out, status=201 if created else 200, headers=NO_STORE)
    if sets_cookie:
        _set_queue_cookie(response, request, room, out.queue_token)
    return response


HOT_HANDLERS = (("GET", "/api/rooms/{room}/status", hot_status), ("POST", "/api/rooms/{room}/join", hot_join))


@api.get("/api/rooms/{room}/events", response="text", response_content_type="text/event-stream",
         errors=(401, 404, 429, 503), auth="bearer",
         summary="Server-Sent Events of the same status objects, pushed on change")
async def events(request: web.Request) -> web.StreamResponse:
    room = request.match_info["room"]
    wr = request.app[ROOM]
    now = wr.clock()
    claims = _claims(request, room, wr, now)
    await _enforce_status(request, wr, room, claims, now)  # a stream (re)connect costs what a poll costs
    first = await wr.status(room, claims, now)  # 401/404 as problems before the stream starts
    metrics = wr.metrics
    deadline = now + request.app[SETTINGS].waitingroom_sse_max_s
    room_cfg = wr.fresh_room(room, now) or await wr.room(room, now)
    metrics.sse_streams.inc()
    try:
        async with contextlib.AsyncExitStack() as stack:
            sse = await stack.enter_async_context(sse_response(request, headers=stream_headers(
                request, "text/event-stream", **{"Cache-Control": "no-store", "X-Accel-Buffering": "no"})))
            watch = stack.enter_context(request.app[PULSES].watch(room, claims.visitor_id))
            with contextlib.suppress(ConnectionResetError):  # the visitor closed the tab
                await _stream(sse, wr, room, claims, first, deadline, request.app.get(SSE_STOP), watch,
                              abandon_after_s=room_cfg.abandon_after_s)
            return sse
    finally:
        metrics.sse_streams.dec()


def next_check_s(status: StatusOut, abandon_after_s: int = 0) -> float:
    """When an open stream reads its own status next, if nothing wakes it first (the room's
    pulse wakes it on admission and on any change to the room: waitingroom/sse_pulse.py).

    Waiting, its position moves about once per admission: far back (a long ETA) it is read every
    few seconds, near the front every second. Before the start, it is read at the start. Every
    read is also the visitor's heartbeat, so a stream is read often enough never to be taken
    for an abandoned tab (three reads per ``abandon_after_s`` at least)."""
    longest = SSE_CHECK_MAX_S
    if abandon_after_s > 0:
        longest = min(longest, max(SSE_PULSE_S, abandon_after_s / 3))
    if status.state == "pre_queue":
        return max(SSE_PULSE_S, min(longest, float(status.eta_s or 0)))
    if status.state != "waiting" or status.eta_s is None:  # paused, all held: the pulse wakes it on change
        return longest
    return min(longest, max(SSE_POSITION_EVERY_S, status.eta_s / 20))


async def _stream(sse: Any, wr: WaitingRoom, room: str, claims: QueueTokenClaims, first: StatusOut,
                  deadline: float, stop: asyncio.Event | None = None, watch: Watch | None = None, *,
                  abandon_after_s: int = 0) -> None:
    """Push the status on change until a terminal state, the stream's time limit or shutdown."""
    encoder = msgspec.json.Encoder()
    last, last_sent = first, wr.clock()
    stop = stop or asyncio.Event()
    wake = watch.wake if watch is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    await sse.send(encoder.encode(first).decode(), event="status")
    while last.state not in TERMINAL_STATES and wr.clock() < deadline:
        delay = min(next_check_s(last, abandon_after_s), max(0.0, deadline - wr.clock()))
        timer = loop.call_later(delay, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()
        wake.clear()
        if stop.is_set():
            return  # the browser's EventSource reconnects (to another replica)
        now = wr.clock()
        try:
            current = await wr.status(room, claims, now)
            # the config as it is now (cached per process): an SRE may have shortened abandon_after_s
            abandon_after_s = (wr.fresh_room(room, now) or await wr.room(room, now)).abandon_after_s
        except RedisError as exc:
            if redis_unavailable_reason(exc) is None:
                raise
            return  # Redis went away or refuses: the page polls /status (503 until it is back), nothing is decided
        except StagedoorError as exc:  # evicted or room deleted mid-stream
            await sse.send(msgspec.json.encode({"state": "expired", "detail": exc.detail}).decode(), event="status")
            return
        changed_state = (current.state != last.state or current.paused != last.paused
                         or current.reason != last.reason)
        if not changed_state and (current == last or now - last_sent < SSE_POSITION_EVERY_S):
            continue
        await sse.send(encoder.encode(current).decode(), event="status")
        last, last_sent = current, now


@api.get("/api/rooms/{room}/pow", response=proof_of_work.PowChallenge, errors=(403, 404),
         summary="The current proof-of-work challenge (403 when the room does not require one)")
async def pow_challenge(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    wr = request.app[ROOM]
    now = wr.clock()
    cfg = await wr.room(room, now)
    if cfg.pow_difficulty <= 0:
        raise proof_of_work.PowRefused("this room does not require proof of work")
    subject = None
    with contextlib.suppress(InvalidQueueToken):
        subject = _claims(request, room, wr, now).visitor_id
    challenge = proof_of_work.issue_for_app(request.app, room, cfg.pow_difficulty, subject=subject,
                                            now_ms=int(now * 1000))
    return json_response(challenge, headers={"Cache-Control": "no-store"})


@api.get("/.well-known/jwks.json", summary="Public keys that verify admission tokens", response=dict[str, Any])
async def jwks(request: web.Request) -> web.Response:
    return json_response(request.app[KEYRING].jwks(), headers={"Cache-Control": "public, max-age=300"})


# ---------------------------------------------------------------- the HTML queue page

@api.get("/rooms/{room}", response="text", response_content_type="text/html", errors=(404, 503),
         summary="Queue page: countdown, position, ETA; refreshes itself; redirects to the shop when admitted")
async def queue_page(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    wr = request.app[ROOM]
    now = wr.clock()
    cfg = await wr.room(room, now)
    status: StatusOut | None = None
    token, _ = _presented_token(request, room)
    if token:
        with contextlib.suppress(InvalidQueueToken):
            status = await wr.status(room, wr.verify(room, token, now), now)
    shop = None
    if status is not None and status.state == "admitted" and status.shop_url and status.admission_token:
        # The token travels in the fragment: never sent to a server, never in access logs.
        shop = f"{status.shop_url}#admission_token={quote(status.admission_token)}"
    html = request.app[PAGES].render_queue(room=room, cfg=cfg, status=status, shop_redirect=shop, now=now,
                                               error=request.query.get("error", "")[:64] or None)
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


@api.post("/rooms/{room}", response="text", response_content_type="text/html", status=303,
          body_content_type="application/x-www-form-urlencoded", errors=(404, 409),
          summary="The queue page's join form (works without JavaScript); redirects back to the page")
async def queue_page_join(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    response = web.Response(status=303, headers={"Location": f"/rooms/{quote(room)}"}, content_type="text/html",
                            text=f'<a href="/rooms/{quote(room)}">Back to the queue</a>')
    try:
        out, _, sets_cookie = await _join(request, room, JoinBody())
    except RoomNotFound:
        raise
    except StagedoorError as exc:  # shown on the page ("closed", "sold out", "slow down")
        response.headers["Location"] = f"/rooms/{quote(room)}?error={quote(exc.code)}"
        return response
    if sets_cookie:
        _set_queue_cookie(response, request, room, out.queue_token)
    return response
