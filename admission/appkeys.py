"""AppKeys of the admission app."""

from __future__ import annotations

from aiohttp import web

from admission.admin import Admin
from admission.controller import AdmissionController

ADMIN = web.AppKey("admin", Admin)
CONTROLLER = web.AppKey("admission_controller", AdmissionController)
