"""Prometheus metrics of the waiting room (prefix ``waitingroom_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from stagedoor.metrics import BaseMetrics, LeanCounter


class WaitingRoomMetrics(BaseMetrics):
    def __init__(self) -> None:
        super().__init__("waitingroom")
        self.joins_total = LeanCounter(
            "waitingroom_joins_total", "Join requests by room and result (new, rejoin, admitted, refused outcome)",
            ["room", "result"], registry=self.registry)
        self.joins = self.joins_total.labels  # (room, result): the join path's children, kept
        self.queue_length = Gauge(
            "waitingroom_queue_length", "Visitors waiting in the room (refreshed every 2 s)", ["room"],
            registry=self.registry)
        self.sse_streams = Gauge(
            "waitingroom_sse_streams", "Open Server-Sent Events streams", registry=self.registry)
        self.sse_wakeups_total = LeanCounter(
            "waitingroom_sse_wakeups_total",
            "Open event streams woken by their room's pulse, by reason (admitted, room_changed, registered)",
            ["reason"], registry=self.registry)
        self.sse_pulse_failures_total = Counter(
            "waitingroom_sse_pulse_failures_total",
            "Room pulses that failed (Redis unreachable); the streams fall back on their own reads",
            registry=self.registry)
        self.admission_tokens_minted_total = Counter(
            "waitingroom_admission_tokens_minted_total", "Admission JWTs signed (cached per session)", ["room"],
            registry=self.registry)
