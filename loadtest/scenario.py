"""What a load-test scenario is, and what the bench hands it.

A scenario is a module under ``loadtest/scenarios/`` (see loadtest/README.md):

    READY = True                                   # False: the bench skips it (work in progress)
    DESCRIPTION = "GET /healthz on ticketing"
    LOAD = LoadConfig(processes=2, concurrency=32, duration_s=10)
    TARGETS = (Target("req_per_s", limit="hello_2p", min_ratio=0.5), Target("p99_ms", max_value=50))

    def servers(env: BenchEnv) -> list[ServerSpec]          # what the bench starts for it
    async def setup(env: BenchEnv) -> Any                   # once, in the parent; returns a picklable ctx
    async def request(session, ctx, state: WorkerState) -> int   # one request; returns the HTTP status

and optionally

    def drive(env, ctx, config) -> RunResult                 # instead of one run_load(): own phases,
                                                             # e.g. a flash sale calling run_load() per step
    async def worker_setup(session, ctx, state) -> None      # once per concurrent task, not timed
    async def figures(env, ctx, result) -> list[Figure]      # extra figures (oversold seats, memory...)
    async def teardown(env, ctx) -> None
    EXPECTED_STATUSES = frozenset({200, 201, 409})           # statuses that are not errors (default 2xx/3xx)

Everything here is picklable: the ctx and the env cross into the load-generator processes.
"""

from __future__ import annotations

import importlib
import ipaddress
import pkgutil
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

COMPONENT_PORT_FIELDS = {
    "waitingroom": "STAGEDOOR_WAITINGROOM_PORT",
    "ticketing": "STAGEDOOR_TICKETING_PORT",
    "admission": "STAGEDOOR_ADMISSION_PORT",
    "worker": "STAGEDOOR_WORKER_PORT",
}
PUBLIC_URL_COMPONENTS = ("waitingroom", "ticketing", "admission")  # settings have public_<c>_url for these
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


class NotLoopback(ValueError):
    """A load target outside this machine: the bench only ever drives loopback addresses."""


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback_url(url: str) -> str:
    """Return ``url`` unchanged if it points at this machine; raise NotLoopback otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise NotLoopback(f"load target {url!r}: only http(s) URLs are allowed")
    if not is_loopback_host(parts.hostname):
        raise NotLoopback(f"load target {url!r} is not a loopback address (127.0.0.0/8, ::1, localhost)")
    return url


@dataclass(frozen=True)
class LoadConfig:
    """How hard and how long to drive a scenario. Every bound is explicit."""

    processes: int = 2             # load-generator OS processes
    concurrency: int = 32          # concurrent requests (keep-alive connections) per process
    duration_s: float = 10.0       # measured window, after the warm-up
    warmup_s: float = 2.0          # requests completed in the warm-up are not counted
    max_requests: int = 2_000_000  # total requests issued by all processes, warm-up included
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.processes <= 16:
            raise ValueError("processes must be in 1..16")
        if not 1 <= self.concurrency <= 4096:
            raise ValueError("concurrency must be in 1..4096")
        if not 0 < self.duration_s <= 300:
            raise ValueError("duration_s must be in (0, 300]")
        if not 0 <= self.warmup_s <= 60:
            raise ValueError("warmup_s must be in [0, 60]")
        if not 1 <= self.max_requests <= 100_000_000:
            raise ValueError("max_requests must be in 1..100_000_000")
        if not 0 < self.request_timeout_s <= 120:
            raise ValueError("request_timeout_s must be in (0, 120]")


@dataclass(frozen=True)
class ServerSpec:
    """One server process the bench starts for a scenario and stops afterwards."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    url: str                        # base URL; the bench polls url + ready_path until 200
    ready_path: str = "/readyz"
    ready_timeout_s: float = 60.0


@dataclass(frozen=True)
class BenchEnv:
    """The throwaway stores, secrets and ports of one bench run (or of a manual driver run)."""

    urls: dict[str, str]                       # component -> base URL, e.g. {"ticketing": "http://127.0.0.1:40123"}
    redis_url: str = ""
    database_url: str = ""
    admin_api_key: str = ""
    queue_token_secret: str = ""
    signing_keys_dir: str = ""
    data_dir: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # STAGEDOOR_* variables for every service process of the run, over the scenario's own
    # (``python -m loadtest.bench --setting hot_http=false``)
    settings: dict[str, str] = field(default_factory=dict)

    def url(self, component: str) -> str:
        try:
            return self.urls[component]
        except KeyError:
            raise KeyError(f"no URL for component {component!r} (known: {sorted(self.urls)})") from None

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_api_key}"}

    def service_env(self, **overrides: str) -> dict[str, str]:
        """STAGEDOOR_* variables for a service process of this run (ports of every component included)."""
        env = {
            "STAGEDOOR_REDIS_URL": self.redis_url,
            "STAGEDOOR_DATABASE_URL": self.database_url,
            "STAGEDOOR_ADMIN_API_KEY": self.admin_api_key,
            "STAGEDOOR_QUEUE_TOKEN_SECRET": self.queue_token_secret,
            "STAGEDOOR_SIGNING_KEYS_DIR": self.signing_keys_dir,
            "STAGEDOOR_COOKIE_SECURE": "false",
            "STAGEDOOR_LOG_LEVEL": "WARNING",
            "STAGEDOOR_ENVIRONMENT": "production",
        }
        if self.data_dir:
            env["STAGEDOOR_DATA_DIR"] = self.data_dir
        for component, var in COMPONENT_PORT_FIELDS.items():
            if component in self.urls:
                env[var] = str(urlsplit(self.urls[component]).port)
                if component in PUBLIC_URL_COMPONENTS:
                    env[f"STAGEDOOR_PUBLIC_{component.upper()}_URL"] = self.urls[component]
        env.update(overrides)
        env.update(self.settings)
        return {k: v for k, v in env.items() if v != ""}

    def stagedoor(self, component: str, processes: int = 2, **env_overrides: str) -> ServerSpec:
        """``stagedoor serve <component> --processes N`` on this run's stores and port."""
        if component not in COMPONENT_PORT_FIELDS:
            raise ValueError(f"unknown component {component!r}")
        argv = (sys.executable, "-m", "stagedoor.cli", "serve", component, "--processes", str(processes))
        return ServerSpec(name=f"{component}x{processes}", argv=argv, env=self.service_env(**env_overrides),
                          url=self.url(component))


@dataclass(frozen=True)
class Target:
    """A goal for one figure of a scenario.

    ``figure`` is a key of the driver's summary (``req_per_s``, ``p50_ms``, ``p90_ms``, ``p99_ms``,
    ``max_ms``, ``error_rate``) or the name of a Figure returned by the scenario's ``figures()``.
    ``limit`` names a raw limit measured in the same run (see loadtest/limits.py, e.g. ``hello_2p``,
    ``evalsha_2p``, ``redis_join_p1``, ``pgbench_purchase_cte``); the ratio figure/limit is reported and
    compared with ``min_ratio``. ``min_value`` / ``max_value`` are absolute goals.
    """

    figure: str
    limit: str | None = None
    min_ratio: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    label: str = ""

    def describe(self) -> str:
        parts = []
        if self.min_ratio is not None:
            parts.append(f">= {self.min_ratio:g}x {self.limit}")
        if self.min_value is not None:
            parts.append(f">= {self.min_value:g}")
        if self.max_value is not None:
            parts.append(f"<= {self.max_value:g}")
        return ", ".join(parts) or "-"


@dataclass(frozen=True)
class Figure:
    """An extra figure a scenario reports (e.g. oversold seats, Redis bytes per waiting visitor)."""

    name: str
    value: float
    unit: str = ""


# ----------------------------------------------------------------------------- discovery

SCENARIO_PACKAGE = "loadtest.scenarios"
REQUIRED = ("servers", "setup", "request")


def load_scenario(name: str) -> ModuleType:
    """Import a scenario by short name (``healthz``) or full module path (``loadtest.limits_hello``)."""
    module_name = name if "." in name else f"{SCENARIO_PACKAGE}.{name}"
    module = importlib.import_module(module_name)
    missing = [attr for attr in ("setup", "request") if not hasattr(module, attr)]
    if missing:
        raise ValueError(f"scenario {module_name} lacks {', '.join(missing)}")
    return module


def discover() -> list[str]:
    """Short names of every scenario module under loadtest/scenarios/ (ready or not), sorted."""
    package = importlib.import_module(SCENARIO_PACKAGE)
    return sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))


def load_config(module: ModuleType) -> LoadConfig:
    config = getattr(module, "LOAD", None)
    return config if isinstance(config, LoadConfig) else LoadConfig()


def expected_statuses(module: ModuleType) -> frozenset[int]:
    explicit = getattr(module, "EXPECTED_STATUSES", None)
    if explicit is not None:
        return frozenset(int(s) for s in explicit)
    return frozenset(range(200, 400))


def describe(module: ModuleType) -> dict[str, Any]:
    return {
        "name": module.__name__.rsplit(".", 1)[-1],
        "ready": bool(getattr(module, "READY", True)),
        "description": str(getattr(module, "DESCRIPTION", "")),
    }
