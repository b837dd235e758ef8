"""Ticketing's half of the shop's health (rooms/shop_health.py): each hold and purchase request
made with a valid admission token is timed and counted for its room, so the admission
controller's automatic rate (docs/admission.md "Automatic rate") sees what admitted fans see.

:func:`measured` wraps a route handler. It times the whole handler, then reads the room from
the request's admission token (verification is cached by the key ring, so this is a dictionary
lookup for a token the handler already checked; a request without a valid token is not counted:
it was never an admitted fan's, and an unverified room name would let anyone write any room's
health). A 5xx answer or a request that did not finish (an exception other than a 4xx problem,
the client's disconnect included) is an error; a 4xx is the fan's, not the shop's. A 401 or 429
is not counted at all: no shop work was done.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from rooms.shop_health import ShopHealthRecorder
from stagedoor.admission_tokens import verify_admission_token
from stagedoor.errors import StagedoorError
from stagedoor.problems import status_of
from stagedoor.web import CALLS, KEYRING, KEYS
from ticketing.appkeys import CLOCK, SHOP_HEALTH

# Refused before any shop work (not signed in, over the request limits): neither the shop's
# latency nor its errors, and not worth a token verification each.
NOT_SHOP_WORK = frozenset({401, 429})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EventOf = Callable[[web.Request], str]


def _room(request: web.Request, event_of: EventOf) -> str | None:
    token = request.headers.get("X-Admission-Token")
    if not token:
        return None
    try:
        return verify_admission_token(request.app[KEYRING], token, event_of(request)).room
    except StagedoorError:
        return None


def measured(event_of: EventOf) -> Callable[[Handler], Handler]:
    """Time and count the handler's requests for their room; ``event_of(request)`` names the
    event the admission token must be for."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def timed(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500  # until the handler answers: a request that does not finish is an error
            try:
                response = await handler(request)
                status = response.status
                return response
            except StagedoorError as exc:
                status = status_of(exc)
                raise
            finally:
                recorder = request.app.get(SHOP_HEALTH)
                if recorder is not None and status not in NOT_SHOP_WORK:
                    room = _room(request, event_of)
                    if room is not None:
                        recorder.record(room, time.perf_counter() - started, status >= 500)

        return timed

    return wrap


async def shop_health_ctx(app: web.Application) -> AsyncIterator[None]:
    """The recorder (after the clock exists); what it still holds is written at shutdown."""
    clock = app[CLOCK]
    recorder = ShopHealthRecorder(app[CALLS], app[KEYS], clock=lambda: clock.now_ms() / 1000)
    app[SHOP_HEALTH] = recorder
    yield
    await recorder.aclose()
