"""Helpers for the ops tests: which metrics the code exports, which ones a PromQL query reads.

Exported metrics come from two places, unioned:
- the registries of the four service apps as ``create_app`` builds them (no store is
  contacted: cleanup contexts only run on start-up), rendered by ``generate_latest``;
- the source of the service packages: every ``Counter(``/``Gauge(``/``Histogram(``/
  ``Summary(``/``*MetricFamily(`` definition with a literal name (metrics registered by a
  start-up context or a custom collector are not in the registry before start-up).

External exporters scraped by ops/prometheus/prometheus.yml contribute the names listed
in EXTERNAL_METRICS (each with the exporter it comes from), and nothing else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
SERVICE_PACKAGES = ("stagedoor", "waitingroom", "admission", "ticketing")

# Metrics not exported by our code, allowed in rules/dashboards because a scrape job in
# ops/prometheus/prometheus.yml collects them. name -> source.
EXTERNAL_METRICS: dict[str, str] = {
    "up": "prometheus (every scrape target)",
    "scrape_duration_seconds": "prometheus (every scrape target)",
    "redis_up": "redis_exporter (job redis)",
    "redis_memory_used_bytes": "redis_exporter (job redis)",
    "redis_memory_max_bytes": "redis_exporter (job redis)",
    "redis_connected_clients": "redis_exporter (job redis)",
    "redis_commands_processed_total": "redis_exporter (job redis)",
    "redis_evicted_keys_total": "redis_exporter (job redis)",
    "prometheus_rule_evaluation_failures_total": "prometheus (job prometheus)",
    "prometheus_notifications_dropped_total": "prometheus (job prometheus)",
}

_DEFINITION_RE = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|Info|Enum|CounterMetricFamily|GaugeMetricFamily|"
    r"HistogramMetricFamily|SummaryMetricFamily)\(\s*(?:name\s*=\s*)?[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']"
)
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "CounterMetricFamily": ("_total",),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "HistogramMetricFamily": ("_bucket", "_sum", "_count"),
    "Summary": ("", "_sum", "_count", "_created"),
    "SummaryMetricFamily": ("", "_sum", "_count"),
    "Info": ("_info",),
    "Enum": ("",),
}


def _sample_names(kind: str, name: str) -> set[str]:
    if kind.startswith("Counter") and name.endswith("_total"):
        name = name.removesuffix("_total")
    if kind == "Info" and name.endswith("_info"):
        name = name.removesuffix("_info")
    return {name + suffix for suffix in _SUFFIXES[kind]}


def source_metric_names() -> set[str]:
    names: set[str] = set()
    for package in SERVICE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in _DEFINITION_RE.findall(path.read_text()):
                names |= _sample_names(kind, name)
    return names


def registry_metric_names() -> set[str]:
    """Sample names the four apps' registries declare right after ``create_app``."""
    from prometheus_client import generate_latest

    from stagedoor.cli import COMPONENTS
    from stagedoor.keys import KeyRing
    from stagedoor.settings import load_settings
    from stagedoor.web import METRICS

    settings = load_settings(environ={}, redis_url="redis://127.0.0.1:1/0", database_url="postgresql://x@127.0.0.1:1/x",
                             admin_api_key="k" * 32, queue_token_secret="s" * 32, signing_keys_dir="/nonexistent")
    keyring = KeyRing.generate()
    names: set[str] = set()
    for component in COMPONENTS.values():
        app = component.create_app(settings, keyring)
        text = generate_latest(app[METRICS].registry).decode()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                names |= _sample_names(kind.capitalize(), name) if kind in ("counter", "gauge", "histogram",
                                                                             "summary") else {name}
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@functools.cache
def _exported() -> frozenset[str]:
    return frozenset(source_metric_names() | registry_metric_names())


def exported_metric_names() -> set[str]:
    return set(_exported())


# ------------------------------------------------------------------ PromQL

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
             "offset", "bool", "inf", "nan", "atan2", "start", "end"}
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR_RE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_LABEL_LIST_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT_RE = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(?![A-Za-z0-9_:])(?!\s*\()")


def metrics_in_query(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels, durations excluded)."""
    text = _GRAFANA_VAR_RE.sub("1", expr)
    text = _STRING_RE.sub('""', text)
    text = re.sub(r"\{[^}]*\}", "", text)   # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = _LABEL_LIST_RE.sub("", text)
    # Grouping after the aggregation: `sum(x) by (a)` was removed above; numbers/durations:
    text = re.sub(r"\b\d+(\.\d+)?([smhdwy]|ms)?\b", "0", text)
    return {m for m in _IDENT_RE.findall(text) if m.lower() not in _KEYWORDS}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL expressions of a Grafana dashboard's panels."""
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def unknown_metrics(exprs: Iterable[str], exported: set[str]) -> dict[str, set[str]]:
    allowed = exported | set(EXTERNAL_METRICS)
    out: dict[str, set[str]] = {}
    for expr in exprs:
        missing = metrics_in_query(expr) - allowed
        if missing:
            out[expr] = missing
    return out
