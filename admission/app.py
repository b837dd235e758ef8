"""The admission controller and SRE admin API app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from admission.admin import Admin
from admission.appkeys import ADMIN, CONTROLLER, METRICS
from admission.auto_rate import AutoRate
from admission.console import routes as console_routes
from admission.controller import AdmissionController, controller_ctx
from admission.metrics import AdmissionMetrics
from admission.room_rebuild import room_rebuild_ctx
from admission.routes import api
from rooms.auto_rate_store import AutoRateStore
from rooms.queue_store import QueueStore
from rooms.shop_health import ShopHealthReader
from rooms.store import RoomStore
from stagedoor.edge import add_routes
from stagedoor.keys import KeyRing
from stagedoor.pages import STATIC_DIR
from stagedoor.settings import Settings
from stagedoor.web import CALLS, DB, KEYS, SETTINGS, add_static, base_app, keyring_ctx


async def admission_ctx(app: web.Application) -> AsyncIterator[None]:
    rooms = RoomStore(app[CALLS], app[KEYS])
    queue = QueueStore(app[CALLS], app[KEYS])
    app[ADMIN] = Admin(rooms, queue, app.get(DB))
    auto_rate = AutoRate(AutoRateStore(app[CALLS], app[KEYS]), ShopHealthReader(app[CALLS], app[KEYS]), app[METRICS])
    app[CONTROLLER] = AdmissionController(app[SETTINGS], rooms, queue, app[METRICS], auto_rate=auto_rate)
    yield


def create_app(settings: Settings, keyring: KeyRing | None = None, *, run_controller: bool = True) -> web.Application:
    metrics = AdmissionMetrics()
    app = base_app(
        settings, metrics, [api],
        title="stagedoor admission",
        description="Admission controller and the SRE admin API for waiting rooms.",
        keyring=keyring,
    )
    app[METRICS] = metrics
    app.cleanup_ctx.append(keyring_ctx())
    app.cleanup_ctx.append(admission_ctx)
    app.cleanup_ctx.append(room_rebuild_ctx)  # Redis gets the rooms back from PostgreSQL
    if run_controller:
        app.cleanup_ctx.append(controller_ctx(CONTROLLER))
    add_routes(app, console_routes)  # HTML admin console
    add_static(app, "/static", STATIC_DIR)
    return app
