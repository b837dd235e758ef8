"""HTTP handlers of the admin API (port 8082): thin, they authenticate, parse, call, encode.

Every handler first asks the policy whether the caller may manage rooms at all (admins; an
organizer, or their API client with scope rooms:write): anyone else gets 403 before the body
is read or any room looked up, so a token holder learns nothing of which rooms exist. Per room
(admission/admin.py): another organizer's room answers the same 404 as a missing one."""

from __future__ import annotations

import time

from aiohttp import web

from admission.admin import RoomList, RoomOut
from admission.appkeys import ADMIN
from rooms.store import RoomConfig, RoomPatch
from stagedoor.auth import Principal, require_principal
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize_action
from stagedoor.web import decode_body, json_response

api = Api(tag="admin")


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _room_manager(request: web.Request) -> Principal:
    """The caller, when it may manage some room; 401/403 before any lookup otherwise."""
    return authorize_action(await require_principal(request), Action.ROOM_MANAGE)


@api.put("/admin/rooms/{room}", body=RoomConfig, response=RoomOut, status=201, auth="bearer",
         errors=(400, 401, 403, 404, 409, 413, 415, 422), extra_responses={200: "The room existed and was replaced"},
         summary="Create (201) or replace (200) a room's configuration")
async def put_room(request: web.Request) -> web.Response:
    principal = await _room_manager(request)
    body = await decode_body(request, RoomConfig)
    out, created = await request.app[ADMIN].put(principal, request.match_info["room"], body, _now_ms())
    return json_response(out, status=201 if created else 200)


@api.get("/admin/rooms/{room}", response=RoomOut, auth="bearer", errors=(401, 403, 404),
         summary="A room's configuration and live stats")
async def get_room(request: web.Request) -> web.Response:
    principal = await _room_manager(request)
    return json_response(await request.app[ADMIN].get(principal, request.match_info["room"], _now_ms()))


@api.patch("/admin/rooms/{room}", body=RoomPatch, response=RoomOut, auth="bearer",
           errors=(400, 401, 403, 404, 409, 415, 422), summary="Change any config field (effective within 1 s)")
async def patch_room(request: web.Request) -> web.Response:
    principal = await _room_manager(request)
    body = await decode_body(request, RoomPatch)
    return json_response(await request.app[ADMIN].patch(principal, request.match_info["room"], body, _now_ms()))


@api.delete("/admin/rooms/{room}", status=204, auth="bearer", errors=(401, 403, 404),
            summary="Delete a room, its queue and its event link")
async def delete_room(request: web.Request) -> web.Response:
    principal = await _room_manager(request)
    await request.app[ADMIN].delete(principal, request.match_info["room"])
    return web.Response(status=204)


@api.post("/admin/rooms/{room}/pause", response=RoomOut, auth="bearer", errors=(401, 403, 404),
          summary="Stop admission (the queue keeps its order)")
async def pause_room(request: web.Request) -> web.Response:
    principal = await _room_manager(request)
    return json_response(await request.app[ADMIN].set_paused(principal, request.match_info["room"], True, _now_ms()))


@api.post("/admin/rooms/{room}/resume", response=RoomOut, auth="bearer", errors=(401, 403, 404),
          summary="Restart admission")
async def resume_room(request: web.Request) -> web.Response:
    principal = await _room_manager(request)
    return json_response(await request.app[ADMIN].set_paused(principal, request.match_info["room"], False,
                                                             _now_ms()))


@api.delete("/admin/rooms/{room}/visitors/{visitor_id}", status=204, auth="bearer", errors=(401, 403, 404),
            summary="Evict a visitor: their queue place and shopper session end, their tokens stop working")
async def evict_visitor(request: web.Request) -> web.Response:
    principal = await _room_manager(request)
    await request.app[ADMIN].evict(principal, request.match_info["room"], request.match_info["visitor_id"])
    return web.Response(status=204)


@api.get("/admin/rooms", response=RoomList, auth="bearer", errors=(401, 403),
         summary="Every room the caller may manage, with live stats")
async def list_rooms(request: web.Request) -> web.Response:
    principal = authorize_action(await require_principal(request), Action.ROOM_LIST)
    return json_response(await request.app[ADMIN].list(principal, _now_ms()))
