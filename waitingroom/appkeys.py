"""AppKeys of the waiting room app."""

from __future__ import annotations

import asyncio

from aiohttp import web

from waitingroom.metrics import WaitingRoomMetrics
from waitingroom.pages import QueuePages
from waitingroom.queue import WaitingRoom
from waitingroom.sse_pulse import RoomPulses

METRICS = web.AppKey("waitingroom_metrics", WaitingRoomMetrics)  # the same object as stagedoor.web.METRICS
ROOM = web.AppKey("waiting_room", WaitingRoom)
PAGES = web.AppKey("queue_pages", QueuePages)
# Set when the service shuts down: open SSE streams end at once (EventSource reconnects, to
# another replica in production) instead of holding the shutdown for its whole timeout.
SSE_STOP = web.AppKey("sse_stop", asyncio.Event)
PULSES = web.AppKey("sse_pulses", RoomPulses)  # what wakes the open event streams (waitingroom/sse_pulse.py)
