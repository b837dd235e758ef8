"""The real Prometheus binary against the four running service apps.

The apps run in-process on free ports (real Redis and PostgreSQL behind them); a temporary
prometheus.yml scrapes them with the repository's alert rules loaded. The test waits until
every target is up and every rule group has been evaluated without error, then kills
Prometheus. Skipped only when the `prometheus` binary (Debian package `prometheus`) is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from stagedoor.cli import COMPONENTS
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from tests.support.ops import OPS, dashboard_queries

PROMETHEUS = shutil.which("prometheus")
DEADLINE_S = 90.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed (apt-get install prometheus)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _running_services(settings: Settings, keyring: KeyRing) -> AsyncIterator[dict[str, int]]:
    runners: list[web.AppRunner] = []
    ports: dict[str, int] = {}
    try:
        for name, component in COMPONENTS.items():
            runner = web.AppRunner(component.create_app(settings, keyring), access_log=None)
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ports[name] = int(runner.addresses[0][1])
        yield ports
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@contextlib.asynccontextmanager
async def _prometheus(config: Path, data_dir: Path, port: int, log: Path) -> AsyncIterator[str]:
    assert PROMETHEUS
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
            stdout=log_file, stderr=log_file,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


def _tail(log: Path) -> str:
    return log.read_text()[-3000:] if log.exists() else ""


async def _eventually(check: Callable[[], Any], what: str, log: Path) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    last: Any = None
    while time.monotonic() < deadline:
        try:
            ok, last = await check()
        except (aiohttp.ClientError, OSError) as exc:
            ok, last = False, repr(exc)
        if ok:
            return last
        await asyncio.sleep(0.5)
    pytest.fail(f"{what} not reached in {DEADLINE_S:.0f}s; last state: {last}\nprometheus log:\n{_tail(log)}")


async def test_prometheus_scrapes_every_service_and_evaluates_every_rule(
    make_settings: Callable[..., Settings], keyring: KeyRing, tmp_path: Path,
) -> None:
    settings = make_settings()
    prom_port = _free_port()
    log = tmp_path / "prometheus.log"
    async with _running_services(settings, keyring) as ports, aiohttp.ClientSession() as http:
        # Readiness probes set stagedoor_dependency_up (the orchestrator calls them in real life).
        for port in ports.values():
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200, await response.text()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(OPS / "prometheus" / "alerts.yml")],
            "scrape_configs": [
                *({"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                                          "labels": {"service": name}}]}
                  for name, port in ports.items()),
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prom_port}"]}]},
            ],
        }
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        async with _prometheus(config_path, tmp_path / "tsdb", prom_port, log) as base:

            async def targets_up() -> tuple[bool, Any]:
                async with http.get(f"{base}/api/v1/targets") as response:
                    active = (await response.json())["data"]["activeTargets"]
                health = {t["labels"]["job"]: (t["health"], t.get("lastError")) for t in active}
                return len(health) == len(ports) + 1 and all(h == "up" for h, _ in health.values()), health

            await _eventually(targets_up, "every target up", log)

            async def rules_evaluated() -> tuple[bool, Any]:
                async with http.get(f"{base}/api/v1/rules") as response:
                    groups = (await response.json())["data"]["groups"]
                state = {
                    rule["name"]: (rule["health"], rule.get("lastError", ""))
                    for group in groups for rule in group["rules"]
                }
                evaluated = groups and all(not g["lastEvaluation"].startswith("0001-") for g in groups)
                errors = {name: err for name, (health, err) in state.items() if health == "err"}
                assert not errors, f"rules failed to evaluate: {errors}"
                return bool(evaluated) and all(h == "ok" for h, _ in state.values()), state

            state = await _eventually(rules_evaluated, "every rule group evaluated", log)
            assert state, "alerts.yml loaded no rule"
            expected_alerts = {
                rule["alert"]
                for group in yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())["groups"]
                for rule in group["rules"] if "alert" in rule
            }
            assert expected_alerts <= set(state)

            async def dependencies_scraped() -> tuple[bool, Any]:
                async with http.get(f"{base}/api/v1/query",
                                    params={"query": "min by (app, dependency) (stagedoor_dependency_up)"}) as response:
                    result = (await response.json())["data"]["result"]
                seen = {(r["metric"]["app"], r["metric"]["dependency"]): r["value"][1] for r in result}
                return len(seen) >= len(ports) and all(v == "1" for v in seen.values()), seen

            await _eventually(dependencies_scraped, "stagedoor_dependency_up == 1 for every app", log)

            # Every dashboard query parses and evaluates (Grafana variables given plain values).
            for path in sorted((OPS / "grafana" / "dashboards").glob("*.json")):
                for expr in dashboard_queries(json.loads(path.read_text())):
                    query = expr.replace("$__rate_interval", "1m").replace("$room", ".*")
                    async with http.get(f"{base}/api/v1/query", params={"query": query}) as response:
                        body = await response.json()
                    assert body["status"] == "success", f"{path.name}: {expr}: {body.get('error')}"
