"""The ``stagedoor`` command.

    stagedoor up                       the whole product on a laptop (embedded stores, demo data)
    stagedoor serve COMPONENT          one component for production: waitingroom, ticketing,
                                       admission or worker
    stagedoor migrate                  apply database migrations
    stagedoor keys new                 add a signing key (it signs from now on; old keys still verify)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from stagedoor.hot_http import make_site
from stagedoor.keys import KeyRing, write_new_key
from stagedoor.logs import configure_logging
from stagedoor.settings import Settings, SettingsError, load_settings, require, require_payment_gateway

logger = logging.getLogger("stagedoor.cli")


@dataclass(frozen=True)
class Component:
    name: str
    factory: str  # "module:function"
    port_field: str

    def create_app(self, settings: Settings, keyring: KeyRing | None) -> web.Application:
        module, _, func = self.factory.partition(":")
        factory: Callable[..., web.Application] = getattr(importlib.import_module(module), func)
        return factory(settings, keyring=keyring)

    def port(self, settings: Settings) -> int:
        return int(getattr(settings, self.port_field))


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component("waitingroom", "waitingroom.app:create_app", "waitingroom_port"),
        Component("ticketing", "ticketing.app:create_app", "ticketing_port"),
        Component("admission", "admission.app:create_app", "admission_port"),
        Component("worker", "ticketing.worker:create_worker_app", "worker_port"),
    )
}


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _wait_for_stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _freeze_startup_heap() -> None:
    """Once the apps are up: collect, then move every object alive now (modules, routes, caches'
    skeletons: hundreds of thousands) out of the cyclic collector's reach. A request allocates
    enough to trigger collections often, and the oldest generation's would otherwise walk all
    of them each time. (``gc.freeze``, as the CPython docs suggest for a long-running server.)"""
    gc.collect()
    gc.freeze()


async def _serve_apps(apps: Sequence[tuple[web.Application, str, int]], reuse_port: bool = False,
                      on_started: Callable[[], None] | None = None, hot_http: bool = True) -> None:
    """Serve ``apps`` until SIGINT/SIGTERM; ``hot_http`` False: through aiohttp's own TCPSite only."""
    runners: list[web.AppRunner] = []
    try:
        for app, host, port in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            site = make_site(runner, host, port, hot=hot_http, reuse_port=reuse_port or None, backlog=4096)
            await site.start()
        _freeze_startup_heap()
        if on_started:
            on_started()
        await _wait_for_stop_signal()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


# ----------------------------------------------------------------------------- serve

def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    component = COMPONENTS[args.component]
    require(settings, "redis_url", "database_url", "signing_keys_dir")
    if component.name in ("ticketing", "admission"):
        require(settings, "admin_api_key")
    if component.name in ("ticketing", "worker"):  # they charge and refund
        require_payment_gateway(settings)
    if component.name == "waitingroom":
        require(settings, "queue_token_secret")
    configure_logging(component.name, settings.log_level, settings.log_format)
    children: list[subprocess.Popen[bytes]] = []
    reuse_port = args.reuse_port or args.processes > 1
    for _ in range(args.processes - 1):
        children.append(subprocess.Popen(
            [sys.executable, "-m", "stagedoor.cli", "serve", component.name, "--reuse-port"]))
    keyring = KeyRing.from_dir(Path(settings.signing_keys_dir or ""))
    app = component.create_app(settings, keyring)
    port = component.port(settings)
    logger.info("serving", extra={"component": component.name, "port": port, "processes": args.processes,
                                  "hot_http": settings.hot_http})
    try:
        _run(_serve_apps([(app, settings.host, port)], reuse_port=reuse_port, hot_http=settings.hot_http))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(10)
    return 0


# ----------------------------------------------------------------------------- migrate

def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    require(settings, "database_url")
    configure_logging("migrate", settings.log_level, "text")
    from stagedoor.migrate import migrate_url

    applied = _run(migrate_url(settings.database_url or ""))
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "database is up to date")
    return 0


# ----------------------------------------------------------------------------- keys

def cmd_keys_new(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.dir or settings.signing_keys_dir or Path(settings.data_dir) / "keys")
    directory.mkdir(parents=True, exist_ok=True)
    path = write_new_key(directory)
    print(f"new signing key {path}; restart the services to sign with it (old keys keep verifying)")
    return 0


# ----------------------------------------------------------------------------- up

def _laptop_secrets(data_dir: Path) -> dict[str, str]:
    """Random secrets for a laptop, generated once and kept (0600) so tokens survive restarts."""
    path = data_dir / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {
        "admin_api_key": "sd_admin_" + secrets.token_urlsafe(24),
        "queue_token_secret": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    return values


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from stagedoor.embedded import EmbeddedPostgres, EmbeddedRedis

    configure_logging("stagedoor", settings.log_level, args.log_format or "text")
    data_dir = Path(args.data_dir or settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {"environment": "development", "data_dir": str(data_dir)}
    started: list[Any] = []
    try:
        if not settings.redis_url:
            redis_server = EmbeddedRedis(data_dir / "redis", port=6399).start()
            started.append(redis_server)
            overrides["redis_url"] = redis_server.url
        if not settings.database_url:
            pg = EmbeddedPostgres(data_dir / "postgres").start()
            started.append(pg)
            overrides["database_url"] = pg.url
        laptop = _laptop_secrets(data_dir)
        for field in ("admin_api_key", "queue_token_secret"):
            if not getattr(settings, field):
                overrides[field] = laptop[field]
        if not settings.signing_keys_dir:
            overrides["signing_keys_dir"] = str(data_dir / "keys")
        if "STAGEDOOR_COOKIE_SECURE" not in os.environ:
            overrides["cookie_secure"] = False
        extra_lines: list[str] = []
        if settings.payment_gateway == "stripe" and not settings.stripe_api_base:
            stripe_server, stripe_overrides = _local_stripe(settings, data_dir)
            started.append(stripe_server)
            overrides.update(stripe_overrides)
            extra_lines.append(f"  stripe (dev):  {stripe_server.url}  a local Stripe test server (localstripe): "
                               "test cards, no real money")
        mail_dir = None
        if not settings.smtp_host:  # no real SMTP server: a local sink keeps the mail, /dev/mail shows it
            overrides.update(smtp_host="127.0.0.1", smtp_port=settings.dev_smtp_port, smtp_starttls=False,
                             smtp_username=None, smtp_password=None)
            mail_dir = data_dir / "mail"
        settings = load_settings(**overrides)
        keyring = KeyRing.from_dir(Path(settings.signing_keys_dir or ""), create=True)
        if args.prometheus:
            from stagedoor.dev_prometheus import DevPrometheus, PrometheusMissing

            targets = {name: f"127.0.0.1:{component.port(settings)}" for name, component in COMPONENTS.items()}
            try:
                prometheus = DevPrometheus(data_dir / "prometheus", args.prometheus_port, targets).start()
            except PrometheusMissing as exc:
                raise SystemExit(f"stagedoor up --prometheus: {exc}") from None
            started.append(prometheus)
            extra_lines.append(f"  prometheus:    {prometheus.url}  (alerts: {prometheus.url}/alerts)")
        _run(_up(settings, keyring, seed=not args.no_demo, mail_dir=mail_dir, extra_lines=extra_lines))
    finally:
        for server in reversed(started):
            server.stop()
    print("stagedoor stopped; data kept in", data_dir)
    return 0


def _local_stripe(settings: Settings, data_dir: Path) -> tuple[Any, dict[str, Any]]:
    """A local Stripe test server for ``STAGEDOOR_PAYMENT_GATEWAY=stripe`` without an api base:
    localstripe on 127.0.0.1 (port 8420 when free), its objects kept under the data dir, test keys
    for whatever key is unset, and our webhook endpoint registered with it."""
    from stagedoor.dev_stripe import LocalStripe, local_keys
    from stagedoor.embedded import free_port

    api_key, publishable_key, webhook_secret = local_keys()
    server = LocalStripe(data_dir / "stripe" / "localstripe.log", port=free_port(8420),
                         store_path=data_dir / "stripe" / "store.pickle").start()
    values = {"stripe_api_base": server.url,
              "stripe_api_key": settings.stripe_api_key or api_key,
              "stripe_publishable_key": settings.stripe_publishable_key or publishable_key,
              "stripe_webhook_secret": settings.stripe_webhook_secret or webhook_secret}
    try:
        server.register_webhook(settings.url_of("ticketing") + "/api/payments/webhook", values["stripe_webhook_secret"])
    except BaseException:
        server.stop()
        raise
    logger.info("local_stripe_started", extra={"url": server.url})
    return server, values


async def _up(settings: Settings, keyring: KeyRing, seed: bool, mail_dir: Path | None = None,
              extra_lines: list[str] | None = None) -> None:
    from stagedoor.demo import seed_demo
    from stagedoor.migrate import migrate_url

    await migrate_url(settings.database_url or "")
    demo_lines = await seed_demo(settings, keyring) if seed else []
    sink = None
    if mail_dir is not None:
        from stagedoor.dev_mail import MailSink, sink_port, start_sink

        try:
            sink = await start_sink(MailSink(mail_dir), "127.0.0.1", settings.smtp_port)
        except OSError:  # the port is taken (another `stagedoor up`?): any free port will do
            sink = await start_sink(MailSink(mail_dir), "127.0.0.1", 0)
        settings = msgspec.structs.replace(settings, smtp_port=sink_port(sink))
    apps = [(c.create_app(settings, keyring), settings.host, c.port(settings)) for c in COMPONENTS.values()]
    if sink is not None and mail_dir is not None:
        from stagedoor.dev_mail import add_dev_mail

        ticketing = dict(zip(COMPONENTS, apps, strict=True))["ticketing"][0]
        add_dev_mail(ticketing, mail_dir)
        demo_lines = [*demo_lines, f"  mail (dev):    {settings.url_of('ticketing')}/dev/mail/  "
                                   f"(SMTP sink on 127.0.0.1:{settings.smtp_port}, kept in {mail_dir})"]

    def banner() -> None:
        lines = [
            "",
            "stagedoor is up",
            "pages",
            f"  shop           {settings.url_of('ticketing')}/   (sign up / sign in: /signin)",
            f"  organizer      {settings.url_of('ticketing')}/organizer",
            f"  admin console  {settings.url_of('admission')}/console",
            "services",
            f"  waiting room   {settings.url_of('waitingroom')}",
            f"  ticketing      {settings.url_of('ticketing')}",
            f"  admission API  {settings.url_of('admission')}",
            f"  worker         {settings.url_of('worker')}",
            "  each service:  /healthz  /readyz  /metrics  /openapi.json",
            f"  admin API key: {settings.admin_api_key}",
            f"  redis:         {settings.redis_url}",
            f"  postgres:      {settings.database_url}",
            *demo_lines,
            *(extra_lines or []),
            "  Ctrl-C stops everything (data is kept for the next run)",
            "",
        ]
        print("\n".join(lines), flush=True)

    try:
        await _serve_apps(apps, on_started=banner, hot_http=settings.hot_http)
    finally:
        if sink is not None:
            sink.close()
            await sink.wait_closed()


# ----------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stagedoor", description="stagedoor waiting room and ticketing")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole product locally (embedded Redis/PostgreSQL, demo data)")
    up.add_argument("--data-dir", help="where embedded data and laptop secrets live (default ./.stagedoor)")
    up.add_argument("--no-demo", action="store_true", help="do not seed the demo event and room")
    up.add_argument("--log-format", choices=["json", "text"], help="log format (default text for up)")
    up.add_argument("--prometheus", action="store_true",
                    help="also run Prometheus (Debian package) scraping every service with ops/prometheus/alerts.yml")
    up.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus port with --prometheus")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run one component")
    serve.add_argument("component", choices=sorted(COMPONENTS))
    serve.add_argument("--processes", type=int, default=1, help="worker processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_new = keys_sub.add_parser("new", help="add a new Ed25519 signing key")
    keys_new.add_argument("--dir", help="key directory (default STAGEDOOR_SIGNING_KEYS_DIR or .stagedoor/keys)")
    keys_new.set_defaults(func=cmd_keys_new)

    for extend in _EXTENSIONS:
        extend(sub)
    return parser


# Other packages add subcommands (e.g. accounts: create-admin, register-client) here.
_EXTENSIONS: list[Callable[[Any], None]] = []


def _load_extensions() -> None:
    if _EXTENSIONS:
        return  # already loaded (main() may run more than once in one process, e.g. in tests)
    for module in ("ticketing.accounts.cli", "admission.cli_commands"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        _EXTENSIONS.append(mod.add_commands)


def main(argv: Sequence[str] | None = None) -> int:
    _load_extensions()
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"stagedoor: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings) or 0)
    except SettingsError as exc:
        print(f"stagedoor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
