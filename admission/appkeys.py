"""AppKeys of the admission app."""

from __future__ import annotations

from aiohttp import web

from admission.admin import Admin
from admission.controller import AdmissionController
from admission.metrics import AdmissionMetrics

METRICS = web.AppKey("admission_metrics", AdmissionMetrics)  # the same object as stagedoor.web.METRICS
ADMIN = web.AppKey("admin", Admin)
CONTROLLER = web.AppKey("admission_controller", AdmissionController)
