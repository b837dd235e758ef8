"""Prometheus metrics of the notifications (on the owning app's registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class NotificationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.sent_total = Counter(
            "notifications_sent_total", "Messages accepted by the SMTP server or SMS provider",
            ["kind", "channel"], registry=registry)
        self.failed_total = Counter(
            "notifications_failed_total", "Messages that could not be sent, by reason "
            "(permanent: refused by the server; transient: still failing after the retries; error: a bug)",
            ["kind", "channel", "reason"], registry=registry)
        self.skipped_total = Counter(
            "notifications_skipped_total", "Messages not sent by design, by reason (already_sent: a redelivery; "
            "disabled: channel not configured; no_recipient)",
            ["kind", "channel", "reason"], registry=registry)
        self.send_seconds = Histogram(
            "notification_send_seconds", "Time to hand one message to the SMTP server or SMS provider, "
            "retries included", ["channel"], buckets=SEND_BUCKETS, registry=registry)
