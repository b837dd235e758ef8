"""Build the Grafana dashboards in ops/grafana/dashboards/ from the panel lists below.

    .venv/bin/python ops/grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python ops/grafana/build_dashboards.py --check  # exit 1 if they are stale

A panel names the metrics it needs (`needs`). Panels whose metrics the code does not export
yet (planned service metrics) are left out and listed on stdout; re-run this script when a
service adds them. tests/ops/test_grafana.py checks that the committed JSON queries only
exported metrics and matches this script's output.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "ops" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
# Fan-facing API routes (the p99 < 500 ms budget); SSE streams and ops routes are excluded.
FAN_APPS = 'app=~"waitingroom|ticketing"'
NOT_FAN_ROUTES = 'route!~"/metrics|/healthz|/readyz|/openapi.json|/api/rooms/\\\\{room\\\\}/events|unmatched"'
FAN = f"{FAN_APPS}, {NOT_FAN_ROUTES}"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (expr, legend)
    needs: set[str]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    description: str = ""
    thresholds: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    room_variable: bool = False


def _latency(q: float, selector: str, by: str) -> str:
    return (f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate(http_request_duration_seconds_bucket{{{selector}}}[$__rate_interval])))")


def _rate(metric: str, selector: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[$__rate_interval]))"


HTTP = {"http_request_duration_seconds_bucket"}
HTTP_COUNT = {"http_request_duration_seconds_count"}

DASHBOARDS = [
    Dashboard(
        "stagedoor-queue", "stagedoor / Queue and admission",
        "Who waits, who gets in, how fast: the waiting room and the admission controller. Gauges are "
        "reported by every replica, so they are combined with max; counters with sum.",
        room_variable=True,
        panels=[
            Panel("People waiting", [('max by (room) (waitingroom_queue_length{room=~"$room"})', "{{room}}")],
                  {"waitingroom_queue_length"}, description="Visitors in the queue, per room (refreshed every 2 s)."),
            Panel("Admitted per second", [(_rate("admission_admitted_total", 'room=~"$room"', "room"), "{{room}}")],
                  {"admission_admitted_total"}, unit="reqps"),
            Panel("Active shoppers", [('max by (room) (admission_active_shoppers{room=~"$room"})', "{{room}}")],
                  {"admission_active_shoppers"},
                  description="Admitted visitors whose shop session is live (capacity used against max_active)."),
            Panel("Admission held back by the stock",
                  [('max by (room) (admission_stock_bound{room=~"$room"})', "{{room}}")],
                  {"admission_stock_bound"},
                  description="1 while every ticket left is held or being chosen by an admitted shopper and fans "
                              "wait (their page says so); admission resumes as holds end (docs/admission.md)."),
            Panel("Admission rate (configured or automatic)",
                  [('max by (room) (admission_rate_per_second{room=~"$room"})', "{{room}}")],
                  {"admission_rate_per_second"}, unit="reqps",
                  description="The rate each room admits at now; with rate_mode auto, the controller's latest step "
                              "between the organizer's bounds."),
            Panel("Joins per second by result",
                  [(_rate("waitingroom_joins_total", 'room=~"$room"', "result"), "{{result}}")],
                  {"waitingroom_joins_total"}, unit="reqps"),
            Panel("Abandoned visitors and expired sessions per second",
                  [(_rate("admission_abandoned_total", 'room=~"$room"', "room"), "abandoned {{room}}"),
                   (_rate("admission_sessions_expired_total", 'room=~"$room"', "room"), "session expired {{room}}"),
                   (_rate("admission_unheard_stops_total", 'room=~"$room"', "room"), "held (unheard) {{room}}")],
                  {"admission_abandoned_total", "admission_sessions_expired_total", "admission_unheard_stops_total"},
                  unit="reqps",
                  description="Held: ticks that stopped at a silent visitor they could not judge, the room's recent "
                              "heartbeats having a gap (after an outage: until abandon_after_s has been heard)."),
            Panel("Admission tokens minted per second",
                  [(_rate("waitingroom_admission_tokens_minted_total", 'room=~"$room"', "room"), "{{room}}")],
                  {"waitingroom_admission_tokens_minted_total"}, unit="reqps"),
            Panel("Open live-update streams (SSE)", [("sum(waitingroom_sse_streams)", "streams")],
                  {"waitingroom_sse_streams"}),
            Panel("Streams woken by their room's pulse",
                  [(_rate("waitingroom_sse_wakeups_total", "", "reason"), "{{reason}}"),
                   ("sum(rate(waitingroom_sse_pulse_failures_total[$__rate_interval]))", "failed pulses")],
                  {"waitingroom_sse_wakeups_total", "waitingroom_sse_pulse_failures_total"}, unit="reqps",
                  description="A stream is woken when its visitor is admitted or its room changes; otherwise it "
                              "reads its own status every 1-5 s. Failed pulses: Redis unreachable."),
            Panel("Admission tick duration and errors",
                  [("histogram_quantile(0.99, sum by (le) (rate(admission_tick_duration_seconds_bucket"
                    "[$__rate_interval])))", "tick p99"),
                   ("sum(rate(admission_tick_errors_total[$__rate_interval]))", "errors per second")],
                  {"admission_tick_duration_seconds_bucket", "admission_tick_errors_total"}, unit="s"),
            Panel("Waiting-room API requests per second",
                  [(_rate("http_request_duration_seconds_count", 'app="waitingroom"', "route, status"),
                    "{{route}} {{status}}")],
                  HTTP_COUNT, unit="reqps"),
            Panel("Admin API requests per second",
                  [(_rate("http_request_duration_seconds_count", 'app="admission", route=~"/admin.*"', "route, method"),
                    "{{method}} {{route}}")],
                  HTTP_COUNT, unit="reqps"),
            Panel("Rate-limit decisions",
                  [(_rate("stagedoor_rate_limit_decisions_total", 'app="waitingroom"', "limit, outcome"),
                    "{{limit}} {{outcome}}")],
                  {"stagedoor_rate_limit_decisions_total"}, unit="reqps",
                  description="outcome=error means Redis was unreachable and the request was let through."),
            Panel("Proof-of-work checks",
                  [(_rate("stagedoor_pow_verifications_total", "", "outcome"), "{{outcome}}")],
                  {"stagedoor_pow_verifications_total"}, unit="reqps"),
        ],
    ),
    Dashboard(
        "stagedoor-shop", "stagedoor / Shop funnel",
        "From browsing to a confirmed order: events, seat maps, holds, purchases, payments, check-in.",
        panels=[
            Panel("Funnel: requests per second by step",
                  [(_rate("http_request_duration_seconds_count",
                          'app="ticketing", method="GET", route="/api/events/{id}/seats"', "route"), "seat map"),
                   (_rate("http_request_duration_seconds_count",
                          'app="ticketing", method="POST", route="/api/events/{id}/holds", status="201"', "route"),
                    "holds created"),
                   (_rate("http_request_duration_seconds_count",
                          'app="ticketing", method="POST", route="/api/holds/{id}/purchase", status="201"', "route"),
                    "purchases confirmed")],
                  HTTP_COUNT, unit="reqps", width=24,
                  description="Route templates of the HTTP contract; a step with no traffic shows no line."),
            Panel("Holds by outcome", [(_rate("ticketing_holds_total", "", "outcome"), "{{outcome}}")],
                  {"ticketing_holds_total"}, unit="reqps"),
            Panel("Purchases by result", [(_rate("ticketing_purchases_total", "", "result"), "{{result}}")],
                  {"ticketing_purchases_total"}, unit="reqps"),
            Panel("Orders confirmed per second", [("sum(rate(ticketing_orders_confirmed_total[$__rate_interval]))",
                                                   "confirmed")],
                  {"ticketing_orders_confirmed_total"}, unit="reqps"),
            Panel("Tickets by state (on-sale events)",
                  [("sum by (state) (max by (event, state) (ticketing_inventory_tickets))", "{{state}}")],
                  {"ticketing_inventory_tickets"}, description="free / held / sold, from the Redis counters."),
            Panel("Payment attempts by outcome",
                  [(_rate("ticketing_payment_attempts_total", "", "outcome"), "{{outcome}}")],
                  {"ticketing_payment_attempts_total"}, unit="reqps"),
            Panel("Payment latency p99 by outcome",
                  [("histogram_quantile(0.99, sum by (le, outcome) (rate(ticketing_payment_latency_seconds_bucket"
                    "[$__rate_interval])))", "{{outcome}}")],
                  {"ticketing_payment_latency_seconds_bucket"}, unit="s"),
            Panel("Hold lifetime p50 by ending",
                  [("histogram_quantile(0.5, sum by (le, ending) (rate(ticketing_hold_duration_seconds_bucket"
                    "[$__rate_interval])))", "{{ending}}")],
                  {"ticketing_hold_duration_seconds_bucket"}, unit="s"),
            Panel("Waiting-list offers by outcome",
                  [(_rate("ticketing_waitlist_offers_total", "", "outcome"), "{{outcome}}")],
                  {"ticketing_waitlist_offers_total"}, unit="reqps",
                  description="Returned tickets of sold-out events offered to waiting lists: made, accepted, bought, "
                              "expired (passed to the next fan), void."),
            Panel("Oversell prevented (must stay 0)",
                  [("sum(increase(ticketing_oversell_prevented_total[1h]))", "last hour")],
                  {"ticketing_oversell_prevented_total"}, kind="stat", width=6,
                  thresholds=[(0, "green"), (1, "red")]),
            Panel("Refunds by reason (last hour)",
                  [("sum by (reason) (increase(ticketing_refunds_total[1h]))", "{{reason}}")],
                  {"ticketing_refunds_total"}, kind="stat", width=6, thresholds=[(0, "green"), (1, "orange")]),
            Panel("Check-ins by result", [(_rate("ticketing_checkins_total", "", "result"), "{{result}}")],
                  {"ticketing_checkins_total"}, unit="reqps"),
            Panel("Sign-ins (token grants) and registrations",
                  [(_rate("ticketing_token_grants_total", "", "grant, outcome"), "{{grant}} {{outcome}}"),
                   (_rate("ticketing_registrations_total", "", "outcome"), "registration {{outcome}}")],
                  {"ticketing_token_grants_total", "ticketing_registrations_total"}, unit="reqps"),
            Panel("CSRF rejections by reason",
                  [(_rate("stagedoor_csrf_rejections_total", "", "app, reason"), "{{app}} {{reason}}")],
                  {"stagedoor_csrf_rejections_total"}, unit="reqps"),
            Panel("Seat conflicts, expired holds, declined payments (problems)",
                  [(_rate("stagedoor_problems_total", 'app="ticketing", status=~"409|410|402"', "type, status"),
                    "{{status}} {{type}}")],
                  {"stagedoor_problems_total"}, unit="reqps"),
            Panel("Ticketing requests per second by route",
                  [(_rate("http_request_duration_seconds_count", 'app="ticketing"', "method, route"),
                    "{{method}} {{route}}")],
                  HTTP_COUNT, unit="reqps"),
        ],
    ),
    Dashboard(
        "stagedoor-latency", "stagedoor / Latency",
        "Fan-facing latency against the p99 < 500 ms budget, by service and route.",
        panels=[
            Panel("Fan-facing p99 by service (budget 500 ms)", [(_latency(0.99, FAN, "app"), "{{app}}")],
                  HTTP, unit="s", thresholds=[(0, "green"), (0.5, "red")]),
            Panel("Fan-facing p50 / p95 / p99", [(_latency(0.5, FAN, "app"), "p50 {{app}}"),
                                                 (_latency(0.95, FAN, "app"), "p95 {{app}}"),
                                                 (_latency(0.99, FAN, "app"), "p99 {{app}}")], HTTP, unit="s"),
            Panel("p99 by route", [(_latency(0.99, f"{NOT_FAN_ROUTES}", "app, route"), "{{app}} {{route}}")],
                  HTTP, unit="s", width=24),
            Panel("Requests per second by service",
                  [(_rate("http_request_duration_seconds_count", "", "app"), "{{app}}")], HTTP_COUNT, unit="reqps"),
            Panel("Requests in flight", [("sum by (app) (http_requests_in_flight)", "{{app}}")],
                  {"http_requests_in_flight"}),
            Panel("5xx ratio by service",
                  [(_rate("http_request_duration_seconds_count", 'status=~"5.."', "app") + " / "
                    + _rate("http_request_duration_seconds_count", "", "app"), "{{app}}")],
                  HTTP_COUNT, unit="percentunit", thresholds=[(0, "green"), (0.01, "red")]),
            Panel("Problems by type", [(_rate("stagedoor_problems_total", "", "app, type, status"),
                                        "{{app}} {{status}} {{type}}")],
                  {"stagedoor_problems_total"}, unit="reqps"),
        ],
    ),
    Dashboard(
        "stagedoor-dependencies", "stagedoor / Dependencies",
        "Redis, PostgreSQL and the payment gateway as each service sees them.",
        panels=[
            Panel("Dependency up (readiness probes)",
                  [("min by (app, dependency) (stagedoor_dependency_up)", "{{app}} -> {{dependency}}")],
                  {"stagedoor_dependency_up"}, thresholds=[(0, "red"), (1, "green")],
                  description="Set by each /readyz call (orchestrator probes): 1 reachable, 0 not."),
            Panel("Scrape targets up", [("up", "{{job}} {{instance}}")], {"up"},
                  thresholds=[(0, "red"), (1, "green")]),
            Panel("Payment circuit breaker (0 closed, 1 half-open, 2 open)",
                  [("max(ticketing_payment_breaker_state)", "breaker")],
                  {"ticketing_payment_breaker_state"}, thresholds=[(0, "green"), (1, "orange"), (2, "red")]),
            Panel("Inventory rebuilds from PostgreSQL and holds swept",
                  [(_rate("ticketing_inventory_rebuilds_total", "", "reason"), "rebuild {{reason}}"),
                   ("sum(rate(ticketing_holds_swept_total[$__rate_interval]))", "expired holds swept")],
                  {"ticketing_inventory_rebuilds_total", "ticketing_holds_swept_total"}, unit="reqps"),
            Panel("Redis memory used / maxmemory",
                  [("redis_memory_used_bytes / (redis_memory_max_bytes > 0)", "{{instance}}")],
                  {"redis_memory_used_bytes", "redis_memory_max_bytes"}, unit="percentunit",
                  thresholds=[(0, "green"), (0.85, "red")]),
            Panel("Redis connected clients", [("redis_connected_clients", "{{instance}}")],
                  {"redis_connected_clients"}),
            Panel("Hot-path Redis connection events (lost, reply timeouts, reconnects)",
                  [(_rate("stagedoor_redis_pipeline_events_total", "", "app, event"), "{{app}} {{event}}")],
                  {"stagedoor_redis_pipeline_events_total"}, unit="reqps",
                  description="stagedoor/redis_pipeline.py: one pipelining connection per process; "
                              "'lost' or 'reply_timeout' fail the calls in flight, the next call reconnects."),
            Panel("Hot HTTP layer: requests passed to aiohttp, connections handed off",
                  [(_rate("stagedoor_hot_http_total", "", "app, way"), "{{app}} {{way}}")],
                  {"stagedoor_hot_http_total"}, unit="reqps",
                  description="stagedoor/hot_http/ serves status polls and joins itself; 'passed' are other "
                              "requests aiohttp answered on the same connections, 'handed_off' connections it "
                              "gave aiohttp for good (chunked bodies, Expect, Upgrade, malformed heads). A "
                              "climbing hand-off rate means a client or proxy keeps most traffic off the hot path."),
            Panel("Redis commands per second",
                  [("sum(rate(redis_commands_processed_total[$__rate_interval]))", "commands")],
                  {"redis_commands_processed_total"}, unit="ops"),
            Panel("Rate limiter fail-open (Redis errors)",
                  [(_rate("stagedoor_rate_limit_decisions_total", 'outcome="error"', "app"), "{{app}}")],
                  {"stagedoor_rate_limit_decisions_total"}, unit="reqps"),
            Panel("Dependency problems (503)",
                  [(_rate("stagedoor_problems_total", 'status="503"', "app, type"), "{{app}} {{type}}")],
                  {"stagedoor_problems_total"}, unit="reqps"),
            Panel("Admission tick errors", [("sum(rate(admission_tick_errors_total[$__rate_interval]))", "errors")],
                  {"admission_tick_errors_total"}, unit="reqps"),
            Panel("Outbox lag", [("max(ticketing_outbox_lag_seconds)", "oldest unpublished")],
                  {"ticketing_outbox_lag_seconds"}, unit="s"),
        ],
    ),
]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, object]:
    steps = [{"color": color, "value": None if i == 0 else value}
             for i, (value, color) in enumerate(panel.thresholds or [(0, "green")])]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}} if panel.kind == "timeseries" else
                   {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "none"},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                     "range": True}
                    for i, (expr, legend) in enumerate(panel.targets)],
    }


def build(exported: set[str]) -> tuple[dict[str, dict[str, object]], list[str]]:
    files: dict[str, dict[str, object]] = {}
    omitted: list[str] = []
    for dashboard in DASHBOARDS:
        panels: list[dict[str, object]] = []
        x = y = 0
        for panel in dashboard.panels:
            missing = panel.needs - exported
            if missing:
                omitted.append(f"{dashboard.uid}: '{panel.title}' (needs {', '.join(sorted(missing))})")
                continue
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel_json(panel, len(panels) + 1, x, y))
            x += panel.width
        variables = []
        if dashboard.room_variable:
            source = next((m for m in ("waitingroom_queue_length", "admission_active_shoppers",
                                       "admission_admitted_total") if m in exported), None)
            variables.append({
                "name": "room", "label": "room", "type": "query" if source else "custom",
                "datasource": DATASOURCE if source else None,
                "query": f"label_values({source}, room)" if source else ".*",
                "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
                "current": {"selected": True, "text": "All", "value": "$__all"},
                "options": [], "hide": 0,
            })
        files[f"{dashboard.uid}.json"] = {
            "uid": dashboard.uid,
            "title": dashboard.title,
            "description": dashboard.description,
            "tags": ["stagedoor"],
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "editable": False,
            "graphTooltip": 1,
            "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": variables},
            "annotations": {"list": []},
            "links": [],
            "panels": panels,
        }
    return files, omitted


def render(document: dict[str, object]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.support.ops import EXTERNAL_METRICS, exported_metric_names

    files, omitted = build(exported_metric_names() | set(EXTERNAL_METRICS))
    stale = [name for name, doc in files.items()
             if not (OUT / name).exists() or (OUT / name).read_text() != render(doc)]
    if "--check" in argv:
        for name in stale:
            print(f"stale: ops/grafana/dashboards/{name} (run ops/grafana/build_dashboards.py)")
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, doc in files.items():
        (OUT / name).write_text(render(doc))
    print(f"wrote {len(files)} dashboards to {OUT.relative_to(ROOT)}")
    for line in omitted:
        print(f"  left out until the metric exists: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
