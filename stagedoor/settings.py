"""One typed settings object, read once from ``STAGEDOOR_*`` environment variables.

Nothing else in the code base reads ``os.environ``: the settings are passed down.
Unknown ``STAGEDOOR_*`` names fail at start so a typo cannot silently keep a default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

PREFIX = "STAGEDOOR_"
# Variables under these prefixes belong to the test harness and tools, not the services.
IGNORED_PREFIXES = ("STAGEDOOR_TEST_", "STAGEDOOR_BENCH_")

ROOT_DIR = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT_DIR / "lua"
TEMPLATES_DIR = ROOT_DIR / "templates"

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[int, msgspec.Meta(ge=1, le=86_400)]
# "<burst>/<period><unit>", e.g. "20/10s"; stagedoor/rate_limit.py parses it and bounds the period.
RateSpec = Annotated[str, msgspec.Meta(
    pattern=r"^[1-9][0-9]{0,5}/([1-9][0-9]{0,7}ms|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h)$")]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Stores. None means "not configured": `stagedoor up` then starts embedded servers,
    # `stagedoor serve` refuses to start.
    redis_url: str | None = None
    database_url: str | None = None
    redis_key_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "sd"
    redis_max_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 256
    # Redis Cluster: STAGEDOOR_REDIS_URL then names any one node and redis-py's RedisCluster finds
    # the others (docs/operations.md, "Redis Cluster"); max connections count per node.
    redis_cluster: bool = False
    # The stores' short calls (stagedoor/redis_calls.py: join, status, rate limits, holds, purchases)
    # pipelined on one connection per process; false: batched through redis-py pipelines instead.
    redis_pipelining: bool = True
    db_pool_min_size: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 2
    db_pool_max_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    db_command_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    dependency_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0

    # HTTP.
    host: str = "127.0.0.1"
    waitingroom_port: Port = 8080
    ticketing_port: Port = 8081
    admission_port: Port = 8082
    worker_port: Port = 8083
    public_waitingroom_url: str | None = None
    public_ticketing_url: str | None = None
    public_admission_url: str | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    cookie_secure: bool = True
    trusted_proxies: str = ""  # comma-separated IPs/CIDRs allowed to set X-Forwarded-For
    # Comma-separated origins (https://tickets.example.com) whose pages may send unsafe requests
    # (POST, PUT, PATCH, DELETE) besides the services' own (stagedoor/security.py, CSRF).
    allowed_origins: str = ""
    # The waiting room's status and join served by our own HTTP/1.1 layer in front of aiohttp
    # (stagedoor/hot_http/). false: every request through plain aiohttp (an operator's escape
    # hatch, and the way to measure what the layer is worth).
    hot_http: bool = True

    # Secrets: no defaults. `stagedoor up` generates them for a laptop. The admin key and the
    # queue token secrets are checked at load (``check_secrets``): SECRET_MIN_CHARS characters at
    # least and never a template's placeholder.
    admin_api_key: str | None = None
    queue_token_secret: str | None = None  # signs new queue tokens (stagedoor/queue_tokens.py)
    # Rotation: earlier queue token secrets, comma-separated, that still verify the tokens they
    # signed (each token names its key id) but sign nothing (docs/operations.md, "Rotating the
    # queue token secret").
    queue_token_previous_secrets: str = ""
    signing_keys_dir: str | None = None  # directory of Ed25519 PEM keys; newest file signs

    # Tokens.
    access_token_ttl_s: Annotated[int, msgspec.Meta(ge=30, le=3600)] = 300
    refresh_token_ttl_s: Annotated[int, msgspec.Meta(ge=300, le=90 * 86_400)] = 30 * 86_400
    # Revocation markers (stagedoor/auth.py) are re-read at most this often per subject.
    revocation_cache_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0

    # Accounts (ticketing/accounts*.py, ticketing/oauth*.py, ticketing/password*.py).
    password_min_length: Annotated[int, msgspec.Meta(ge=8, le=64)] = 10
    argon2_time_cost: Annotated[int, msgspec.Meta(ge=1, le=10)] = 2
    argon2_memory_kib: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 19_456
    argon2_parallelism: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1
    password_hash_concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    login_failures_per_account: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    login_failures_per_ip: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    login_failure_window_s: Annotated[int, msgspec.Meta(ge=10, le=86_400)] = 900

    # Ticketing.
    hold_ttl_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 600
    payment_window_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 120
    # POST /api/events carries whole seat maps (100k seats ~ 3 MB of JSON): its own body limit.
    event_body_max_bytes: Annotated[int, msgspec.Meta(ge=64 * 1024, le=64 * 1024 * 1024)] = 16 * 1024 * 1024
    hold_sweep_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 1.0
    # Finished (sold/released/expired) hold records stay readable this long, then are purged.
    hold_record_retention_s: Annotated[int, msgspec.Meta(ge=60, le=7 * 86_400)] = 3600
    # A live seat map is served from memory this long at most (ticketing/catalog/seat_map_cache.py); 0 = off.
    seat_map_cache_ms: Annotated[int, msgspec.Meta(ge=0, le=5000)] = 500

    # Waiting room and admission (waitingroom/, admission/).
    queue_token_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 86_400)] = 2 * 86_400
    admission_tick_ms: Annotated[int, msgspec.Meta(ge=10, le=1000)] = 100
    admission_burst_s: Annotated[float, msgspec.Meta(ge=0.05, le=10)] = 0.5  # bucket depth, in seconds of rate
    admission_max_batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000  # most admitted per room per tick
    waitingroom_sse_max_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 300  # then the client reconnects
    # Purchases (ticketing/orders/purchase.py, ticketing/payments/charging.py). The gateway that charges
    # (docs/payments.md): "mock" (test tokens; its latency and failure rate are for tests and benchmarks)
    # or "stripe".
    payment_gateway: Literal["mock", "stripe"] = "mock"
    # Stripe (ticketing/payments/stripe_gateway.py). The secret key (sk_live_/sk_test_..., or a restricted
    # rk_ key) and the webhook signing secret (whsec_...) are secrets: no defaults. The publishable key
    # (pk_...) is for the checkout page. stripe_api_base: a Stripe-compatible server to use instead of
    # Stripe (a local test server); empty = Stripe itself. Under `stagedoor up` with no api base, a
    # local test server is started (stagedoor/dev_stripe.py) with keys of its own.
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_publishable_key: str | None = None
    stripe_api_base: Annotated[str, msgspec.Meta(pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")] = ""
    payment_mock_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0
    payment_mock_slow_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] = 2_000
    payment_mock_failure_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    payment_attempt_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    payment_retry_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    payment_retry_base_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 50
    payment_retry_max_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 1_000
    payment_breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    payment_breaker_reset_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    # The worker's payment reconciler (ticketing/orders/reconcile.py): pending/unknown payments older
    # than payment_window_s are settled with the gateway; failed refunds are retried after
    # refund_retry_base_s, doubling up to refund_retry_max_s (jittered).
    payment_reconcile_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 10.0
    payment_reconcile_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    refund_retry_base_s: Annotated[float, msgspec.Meta(ge=0.01, le=86_400)] = 30.0
    refund_retry_max_s: Annotated[float, msgspec.Meta(ge=0.01, le=7 * 86_400)] = 6 * 3600.0
    # The worker's gateway sweep (ticketing/payments/sweep.py; docs/payments.md, "Reconciliation with the
    # gateway"): every payment_sweep_interval_s it lists the gateway's payments created from the last
    # sweep's end (minus payment_sweep_overlap_s) until payment_sweep_settle_s ago (keep it above
    # payment_window_s), at most payment_sweep_max_payments per run, and compares them with our records.
    # The first sweep reaches payment_sweep_lookback_s back. payment_sweep_refund_unrecorded: a charge
    # under one of our keys that we have no record of is refunded (else only counted and alerted on).
    payment_sweep_interval_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 300.0
    payment_sweep_max_payments: Annotated[int, msgspec.Meta(ge=100, le=1_000_000)] = 5_000
    payment_sweep_settle_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 900
    payment_sweep_overlap_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 300
    payment_sweep_lookback_s: Annotated[int, msgspec.Meta(ge=0, le=90 * 86_400)] = 86_400
    payment_sweep_refund_unrecorded: bool = True
    idempotency_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 86_400)] = 86_400
    idempotency_inflight_ttl_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 120
    max_tickets_per_account_per_event: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 20
    ticket_code_ttl_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 730
    # the sell-out check runs at once on a purchase's note; this is its retry after a failed check
    sold_out_check_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 250
    # The waiting list after sold out (ticketing/waitlist/, docs/waitlist.md): an offer's claim window
    # (the hold it is lasts that long), and how often the worker looks for returned tickets of
    # sold-out events besides the bus (BookingExpired, OrderRefunded, ...) telling it at once.
    waitlist_offer_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 900
    waitlist_check_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 5.0

    # Event bus (stagedoor/bus.py, docs/event-bus.md): the outbox relay and the stream consumers.
    outbox_relay_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 200
    outbox_relay_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    # Consumed entries beyond this length are trimmed (never one a group still needs).
    bus_stream_maxlen: Annotated[int, msgspec.Meta(ge=10, le=100_000_000)] = 1_000_000
    bus_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    bus_claim_idle_ms: Annotated[int, msgspec.Meta(ge=50, le=3_600_000)] = 30_000
    bus_retry_ms: Annotated[int, msgspec.Meta(ge=10, le=3_600_000)] = 1_000  # first retry of a failed handler
    # a window longer than claim idle + all retries; at 1,000 handled events/s per group a key each
    bus_dedupe_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=7 * 86_400)] = 600
    bus_emit_flush_ms: Annotated[int, msgspec.Meta(ge=5, le=10_000)] = 100  # best-effort events (HoldPlaced)
    # HoldPlaced costs the hold path ~15 % of its throughput (measured by make bench) and no consumer
    # of ours reads it: off unless something (analytics, a CRM) subscribes.
    bus_emit_hold_placed: bool = False

    # Abuse defences (stagedoor/rate_limit.py, stagedoor/pow.py). A rate is "<burst>/<period>",
    # e.g. "20/10s": a bucket of 20 tokens refilled at 20 per 10 s (units ms, s, m, h; burst
    # 1..999999, period at most 8 digits of ms, 5 of s, 4 of m, 2 of h). "per_ip" buckets are
    # keyed by the client IP (an IPv6 /64), "per_subject" by the visitor, user or login name.
    # Redis down -> fail open (docs/security.md, "Rate limits").
    rate_limits_enabled: bool = True
    rate_limit_exempt_ips: str = ""  # comma-separated IPs/CIDRs never limited (load generators)
    rate_limit_join_per_ip: RateSpec = "120/60s"
    rate_limit_join_per_subject: RateSpec = "10/60s"
    rate_limit_status_per_ip: RateSpec = "1200/60s"
    rate_limit_status_per_subject: RateSpec = "120/60s"
    rate_limit_hold_per_ip: RateSpec = "300/60s"
    rate_limit_hold_per_subject: RateSpec = "30/60s"
    rate_limit_purchase_per_ip: RateSpec = "120/60s"
    rate_limit_purchase_per_subject: RateSpec = "10/60s"
    rate_limit_register_per_ip: RateSpec = "30/10m"
    rate_limit_register_per_subject: RateSpec = "3/10m"
    rate_limit_login_per_ip: RateSpec = "60/60s"
    rate_limit_login_per_subject: RateSpec = "10/5m"
    rate_limit_search_per_ip: RateSpec = "600/60s"
    rate_limit_search_per_subject: RateSpec = "300/60s"
    pow_challenge_ttl_s: Annotated[int, msgspec.Meta(ge=10, le=3600)] = 120

    # Notifications (ticketing/notifications/, docs/notifications.md). No SMTP host: e-mail is
    # off (`stagedoor up` then runs a local SMTP sink on dev_smtp_port and shows it at /dev/mail).
    smtp_host: str | None = None
    smtp_port: Port = 587
    smtp_username: str | None = None
    smtp_password: str | None = None  # secret: no default
    smtp_starttls: bool = True
    smtp_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    smtp_from: Annotated[str, msgspec.Meta(min_length=3, max_length=320)] = "stagedoor <tickets@stagedoor.localhost>"
    dev_smtp_port: Port = 8025
    sms_provider: Literal["none", "log", "webhook"] = "log"
    sms_webhook_url: str | None = None
    sms_webhook_token: str | None = None  # secret: sent as "Authorization: Bearer"; no default
    sms_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    notification_retry_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3  # per send, transient errors
    notification_retry_base_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 200
    notification_retry_max_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 5_000
    notification_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5  # per recipient, then given up
    notification_claim_stale_s: Annotated[int, msgspec.Meta(ge=10, le=86_400)] = 300
    notification_concurrency: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    reminder_lead_time_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 86_400)] = 86_400
    reminder_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 60.0
    your_turn_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 1.0

    # Operations.
    data_dir: str = ".stagedoor"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    environment: Literal["development", "test", "production"] = "production"

    def url_of(self, service: Literal["waitingroom", "ticketing", "admission", "worker"]) -> str:
        public: str | None = getattr(self, f"public_{service}_url", None)
        if public:
            return public.rstrip("/")
        port = getattr(self, f"{service}_port")
        return f"http://{self.host}:{port}"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


# The admin API key is a bearer credential and the queue token secret an HMAC-SHA256 key (RFC
# 2104 asks for at least the hash's 32 bytes). 32 URL-safe random characters carry 192 bits, out of
# reach of guessing; a floor cannot measure randomness, but it keeps out words, short passwords and
# half-filled templates. Generate them: python -c "import secrets; print(secrets.token_urlsafe(32))".
SECRET_MIN_CHARS = 32
MAX_PREVIOUS_QUEUE_SECRETS = 4
# Placeholders of .env.example, ops/k8s/secret.template.yaml and the usual "changeme" family,
# matched case-insensitively without separators. Long words only: a random 43-character token
# contains one of them by chance less than once in 10^8 draws.
_PLACEHOLDER_WORDS = ("replace", "changeme", "placeholder", "example", "yoursecret", "insertsecret")
_PLACEHOLDER_MARKS = ("<", ">", "${", "...")
_GENERATE_HINT = ("use at least 32 random characters, e.g. "
                  "python -c \"import secrets; print(secrets.token_urlsafe(32))\"")


def split_secrets(spec: str) -> tuple[str, ...]:
    """"a, b" -> ("a", "b"): a comma-separated secret list (secrets hold no commas or edge spaces)."""
    return tuple(item.strip() for item in spec.split(",") if item.strip())


def _secret_problem(value: str) -> str | None:
    """Why ``value`` cannot be a secret (never quoting it), or None."""
    squashed = re.sub(r"[\s_.-]", "", value.lower())
    if any(word in squashed for word in _PLACEHOLDER_WORDS) or any(mark in value for mark in _PLACEHOLDER_MARKS):
        return "is a placeholder, not a secret"
    if len(value) < SECRET_MIN_CHARS:
        return f"has {len(value)} characters, fewer than {SECRET_MIN_CHARS}"
    return None


def check_secrets(settings: Settings) -> None:
    """Refuse (SettingsError naming the variable, never the value) a short or placeholder admin
    key or queue token secret, and a rotation list that could not work. Unset stays allowed here:
    ``require`` refuses it where a component needs it."""
    for field in ("admin_api_key", "queue_token_secret"):
        value = getattr(settings, field)
        problem = _secret_problem(value) if value else None
        if problem:
            raise SettingsError(f"invalid {env_name(field)}: it {problem}; {_GENERATE_HINT}")
    if settings.admin_api_key and settings.admin_api_key == settings.queue_token_secret:
        raise SettingsError(f"invalid {env_name('admin_api_key')}: it equals {env_name('queue_token_secret')}; "
                            "give each its own random value")
    previous = split_secrets(settings.queue_token_previous_secrets)
    name = env_name("queue_token_previous_secrets")
    if previous and not settings.queue_token_secret:
        raise SettingsError(f"{name} is set but {env_name('queue_token_secret')} is not: the current secret signs")
    if len(previous) > MAX_PREVIOUS_QUEUE_SECRETS:
        raise SettingsError(f"invalid {name}: {len(previous)} secrets, at most {MAX_PREVIOUS_QUEUE_SECRETS}; "
                            "drop those older than STAGEDOOR_QUEUE_TOKEN_TTL_S")
    for number, value in enumerate(previous, start=1):
        problem = _secret_problem(value)
        if problem:
            raise SettingsError(f"invalid {name}: secret {number} {problem}; {_GENERATE_HINT}")
        if value == settings.queue_token_secret:
            raise SettingsError(f"invalid {name}: secret {number} is the current {env_name('queue_token_secret')}")
        if value in previous[:number - 1]:
            raise SettingsError(f"invalid {name}: secret {number} is listed twice")


# Stripe's key shapes: secret keys sk_live_/sk_test_, restricted keys rk_live_/rk_test_, publishable
# keys pk_live_/pk_test_, webhook signing secrets whsec_ (https://docs.stripe.com/keys).
_STRIPE_KEY_RE = re.compile(r"^(sk|rk)_(live|test)_[A-Za-z0-9_-]+$")
_STRIPE_PUBLISHABLE_RE = re.compile(r"^pk_(live|test)_[A-Za-z0-9_-]+$")
_STRIPE_WEBHOOK_SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9+/=_-]+$")
_STRIPE_HINT = "copy it from the Stripe dashboard (Developers > API keys, or the webhook endpoint's page)"


def _stripe_mode(key: str) -> str:
    return "live" if "_live_" in key[:8] else "test"


def check_stripe(settings: Settings) -> None:
    """Refuse (SettingsError naming the variable, never the value) a Stripe key of the wrong kind,
    a placeholder or short secret, and a publishable key of another mode than the secret key.
    Unset stays allowed here: ``require_payment_gateway`` refuses it where a component charges."""
    checks = (("stripe_api_key", _STRIPE_KEY_RE, "a secret key (sk_live_..., sk_test_...) or restricted key (rk_...)"),
              ("stripe_webhook_secret", _STRIPE_WEBHOOK_SECRET_RE, "a webhook signing secret (whsec_...)"),
              ("stripe_publishable_key", _STRIPE_PUBLISHABLE_RE, "a publishable key (pk_live_..., pk_test_...)"))
    for field, shape, kind in checks:
        value = getattr(settings, field)
        if not value:
            continue
        if not shape.match(value):
            raise SettingsError(f"invalid {env_name(field)}: it is not {kind}; {_STRIPE_HINT}")
        problem = _secret_problem(value) if field != "stripe_publishable_key" else None
        if problem:
            raise SettingsError(f"invalid {env_name(field)}: it {problem}; {_STRIPE_HINT}")
    secret, public = settings.stripe_api_key, settings.stripe_publishable_key
    if secret and public and _stripe_mode(secret) != _stripe_mode(public):
        raise SettingsError(f"{env_name('stripe_publishable_key')} is a {_stripe_mode(public)} key but "
                            f"{env_name('stripe_api_key')} is a {_stripe_mode(secret)} key: use the pair of one mode")


def require_payment_gateway(settings: Settings) -> None:
    """Fail with a clear message when the chosen gateway lacks what it needs to charge (the
    components that charge or refund call this at start)."""
    if settings.payment_gateway == "stripe" and not settings.stripe_api_key:
        raise SettingsError(f"{env_name('payment_gateway')}=stripe needs {env_name('stripe_api_key')}: the secret "
                            f"key (sk_live_... or sk_test_...); {_STRIPE_HINT}")


_PATH_RE = re.compile(r"at `\$\.([a-z0-9_]+)`")


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from the environment (plus explicit overrides, used by tests and the CLI)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    known = set(Settings.__struct_fields__)
    for key, value in environ.items():
        if not key.startswith(PREFIX) or key.startswith(IGNORED_PREFIXES):
            continue
        field = key.removeprefix(PREFIX).lower()
        if field not in known:
            raise SettingsError(f"unknown setting {key} (known: {', '.join(sorted(env_name(k) for k in known))})")
        raw[field] = value
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_RE.search(message)
        if match:
            name = env_name(match.group(1))
            message = _PATH_RE.sub("", message).strip(" -")
            raise SettingsError(f"invalid {name}: {message}") from None
        raise SettingsError(f"invalid settings: {message}") from None
    check_secrets(settings)
    check_stripe(settings)
    return settings


def require(settings: Settings, *fields: str) -> None:
    """Fail with a clear message when a setting needed by this component is unset."""
    missing = [env_name(f) for f in fields if getattr(settings, f) in (None, "")]
    if missing:
        raise SettingsError(f"missing required setting(s): {', '.join(missing)}")
