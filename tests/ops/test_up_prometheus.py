"""`stagedoor up --prometheus`: the real Prometheus starts beside the services, scrapes all four
with the repository's alert rules loaded, and stops with Ctrl-C."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.support.up_process import running_up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus binary not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_up_runs_prometheus_scraping_every_service(tmp_path: Path, redis_url: str, database_url: str,
                                                    redis_prefix: str) -> None:
    data_dir = tmp_path / "data"
    ports = {name: _free_port() for name in ("WAITINGROOM", "TICKETING", "ADMISSION", "WORKER", "DEV_SMTP")}
    prom_port = _free_port()
    env = {f"STAGEDOOR_{name}_PORT": str(port) for name, port in ports.items()}
    env.update(STAGEDOOR_REDIS_URL=redis_url, STAGEDOOR_DATABASE_URL=database_url,
               STAGEDOOR_REDIS_KEY_PREFIX=redis_prefix)
    with running_up(data_dir, env, ("--no-demo", "--prometheus", "--prometheus-port", str(prom_port))) as up:
        assert f"prometheus:    http://127.0.0.1:{prom_port}" in up.banner, up.banner

        health: dict[str, str] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                active = _json(f"http://127.0.0.1:{prom_port}/api/v1/targets")["data"]["activeTargets"]
                health = {t["labels"]["job"]: t["health"] for t in active}
            except OSError:
                health = {}
            if len(health) == 5 and set(health.values()) == {"up"}:
                break
            time.sleep(0.5)
        assert set(health) == {"waitingroom", "ticketing", "admission", "worker", "prometheus"}, health
        assert set(health.values()) == {"up"}, health
        rules = _json(f"http://127.0.0.1:{prom_port}/api/v1/rules")["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) > 5  # ops/prometheus/alerts.yml is loaded
    time.sleep(0.5)
    survivors = [p for p in psutil.process_iter(["cmdline"]) if str(data_dir) in " ".join(p.info["cmdline"] or [])]
    assert survivors == [], "prometheus survived Ctrl-C"
