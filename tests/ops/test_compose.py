"""docker-compose.yml, Dockerfile and .env.example, checked without a container engine.

`docker compose config` runs too when the docker client has the compose plugin; otherwise the
file is parsed with PyYAML and checked against the settings defaults and the CLI.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from stagedoor.cli import COMPONENTS, build_parser
from stagedoor.settings import Settings, SettingsError, load_settings
from tests.support.ops import OPS, ROOT

COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"waitingroom", "ticketing", "admission", "worker"}
INFRA = {"redis", "postgres", "migrate", "prometheus", "grafana", "mailpit"}
_INTERPOLATION_RE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
SECRET_FIELDS = ("admin_api_key", "queue_token_secret")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in env:
            return env[name]
        default = re.match(r"\$\{[A-Z0-9_]+:?-(.*)\}$", match.group(0))
        assert default, f"${{{name}}} has no value in .env.example and no default"
        return default.group(1)

    return _INTERPOLATION_RE.sub(sub, value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert SERVICES | INFRA <= set(compose["services"])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_component_runs_its_serve_command_on_its_default_port(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    port = COMPONENTS[name].port(Settings())
    assert service["command"] == ["serve", name]
    assert COMPONENTS[name].name == name and name in build_parser().parse_args(["serve", name]).component
    assert f"{port}:{port}" in service["ports"]
    env = _environment(service)
    assert env[f"STAGEDOOR_{name.upper()}_PORT"] == str(port)
    assert env["STAGEDOOR_HOST"] == "0.0.0.0", "inside a container the service must listen on all interfaces"
    health = " ".join(service["healthcheck"]["test"])
    assert str(port) in health and "/readyz" in health


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_components_start_only_after_stores_migrations_and_keys(compose: dict[str, Any], name: str) -> None:
    deps = _depends(compose["services"][name])
    assert deps["redis"] == "service_healthy"
    assert deps["keys"] == "service_completed_successfully"
    assert deps["migrate"] == "service_completed_successfully"
    if name != "waitingroom":  # the waiting room uses Redis only
        assert deps["postgres"] == "service_healthy"


def test_one_shot_jobs_run_the_cli(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert _depends(services["migrate"]) == {"postgres": "service_healthy"}
    assert services["migrate"]["restart"] == "no"
    assert "stagedoor keys new --dir /keys" in " ".join(services["keys"]["command"])
    seed = services["seed"]
    assert seed["entrypoint"][-1] == "/app/ops/docker/seed_demo.py"
    assert (OPS / "docker" / "seed_demo.py").is_file()
    assert _depends(seed)["migrate"] == "service_completed_successfully"


def test_stores_and_observability_have_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "noeviction" in services["redis"]["command"], "holds and queue places must never be evicted"
    assert "/-/ready" in " ".join(services["prometheus"]["healthcheck"]["test"])
    assert _depends(services["grafana"]) == {"prometheus": "service_healthy"}


def test_every_stagedoor_variable_is_a_valid_setting(compose: dict[str, Any]) -> None:
    # .env.example's placeholders are refused at start (next test): fill in real values, as the README says
    env_values = {k: secrets.token_urlsafe(32) if v.startswith("replace-with-") else v
                  for k, v in _env_example().items()}
    for name, service in compose["services"].items():
        env = {k: _interpolate(v, env_values) for k, v in _environment(service).items() if k.startswith("STAGEDOOR_")}
        if env:
            settings = load_settings(environ=env)  # unknown names or bad values raise SettingsError
            if name in SERVICES:
                assert settings.redis_url and settings.database_url and settings.signing_keys_dir == "/keys"


@pytest.mark.parametrize("field", SECRET_FIELDS)
def test_a_service_started_with_the_env_example_placeholder_refuses_to_start(compose: dict[str, Any],
                                                                             field: str) -> None:
    env_values = {k: secrets.token_urlsafe(32) if v.startswith("replace-with-") else v
                  for k, v in _env_example().items()}
    name = f"STAGEDOOR_{field.upper()}"
    env_values[name] = _env_example()[name]
    env = {k: _interpolate(v, env_values) for k, v in _environment(compose["services"]["ticketing"]).items()
           if k.startswith("STAGEDOOR_")}
    with pytest.raises(SettingsError, match=rf"^invalid {name}: it is a placeholder") as refused:
        load_settings(environ=env)
    assert env_values[name] not in str(refused.value)  # the message names the variable, never its value


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    required = set()
    for service in compose["services"].values():
        for key, value in _environment(service).items():
            lowered = key.lower()
            if any(word in lowered for word in ("password", "secret", "api_key")):
                assert _INTERPOLATION_RE.fullmatch(value), f"{key} must come from .env, not the compose file"
            required |= {m.group(1) for m in _INTERPOLATION_RE.finditer(value) if ":?" in m.group(0)}
            if "DATABASE_URL" in key:
                assert "${POSTGRES_PASSWORD" in value
    documented = _env_example()
    assert required <= set(documented), f"document in .env.example: {sorted(required - set(documented))}"
    for key, value in documented.items():
        if any(word in key.lower() for word in ("password", "secret", "api_key")):
            assert value.startswith("replace-with-"), f".env.example must hold a placeholder for {key}"


def test_mounted_ops_files_exist(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), source
            else:
                assert source in named, f"undeclared volume {source}"
    grafana = compose["services"]["grafana"]["volumes"]
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./ops/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana


def test_prometheus_scrapes_every_component_where_compose_runs_it(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name in SERVICES:
        assert f"{name}:{COMPONENTS[name].port(Settings())}" in targets
    assert "redis-exporter:9121" in targets and "redis-exporter" in compose["services"]
    assert "localhost:9090" in targets


def test_dockerfile_is_multi_stage_non_root_and_ships_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["stagedoor"\]', text, re.M)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    top_level = {p.rstrip("*").split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    for directory in top_level | {"lua", "templates", "ops/docker"}:
        assert re.search(rf"^COPY {re.escape(directory)} ", text, re.M), f"Dockerfile does not COPY {directory}/"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in top_level | {"lua", "templates", "pyproject.toml", "README.md"}:
        assert needed not in ignored


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker client not installed")
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker client has no compose plugin; the PyYAML checks above cover the file")
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(ROOT / ".env.example"), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ the scripts compose runs

def _script_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEDOOR_")}
    if settings is not None:
        for field in ("redis_url", "database_url", "redis_key_prefix", "admin_api_key", "queue_token_secret",
                      "signing_keys_dir"):
            env[f"STAGEDOOR_{field.upper()}"] = str(getattr(settings, field))
    return env | extra


def test_seed_script_refuses_to_run_unconfigured() -> None:
    result = subprocess.run([sys.executable, str(OPS / "docker" / "seed_demo.py")], capture_output=True, text=True,
                            env=_script_env(), timeout=60)
    assert result.returncode == 2
    assert "STAGEDOOR_REDIS_URL" in result.stderr


async def test_seed_script_seeds_the_demo_twice_without_harm(settings: Settings, redis_client: Any) -> None:
    keys = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stagedoor.cli", "keys", "new", "--dir", str(settings.signing_keys_dir),
        env=_script_env(), stdout=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(keys.wait(), 60) == 0
    outputs = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(OPS / "docker" / "seed_demo.py"), env=_script_env(settings),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        outputs.append(out.decode())
    assert outputs[0].strip() and outputs[0] == outputs[1]


async def test_healthcheck_script_follows_readiness(aiohttp_server: Any) -> None:
    ready = {"ok": True}

    async def readyz(request: web.Request) -> web.Response:
        return web.json_response({}, status=200 if ready["ok"] else 503)

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    server = await aiohttp_server(app)

    async def probe(port: int) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(OPS / "docker" / "healthcheck.py"), str(port), "/readyz")
        return await asyncio.wait_for(process.wait(), 30)

    assert await probe(server.port) == 0
    ready["ok"] = False
    assert await probe(server.port) == 1
    await server.close()
    assert await probe(server.port) == 1
