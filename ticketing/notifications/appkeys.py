"""AppKeys of the notifications (on the worker app)."""

from __future__ import annotations

from aiohttp import web

from ticketing.notifications.service import Notifications

NOTIFICATIONS = web.AppKey("notifications", Notifications)
