"""The admin API key and the queue token secrets: at least 32 characters, never a template's
placeholder, checked when the settings load, so a half-configured deployment does not start.
Every refusal names the variable and never echoes the value."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from stagedoor.settings import SECRET_MIN_CHARS, SettingsError, load_settings
from tests.support.ops import ROOT

FIELDS = ("admin_api_key", "queue_token_secret")
PLACEHOLDERS = [
    "replace-with-a-random-value",                         # .env.example
    "<RANDOM_ADMIN_API_KEY>",                              # ops/k8s/secret.template.yaml
    "<RANDOM_QUEUE_TOKEN_SECRET>",
    "changeme",
    "CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME",             # long enough, still a placeholder
    "change-me-" + "0" * 40,
    "placeholder-placeholder-placeholder-000",
    "${STAGEDOOR_ADMIN_API_KEY}",                          # an interpolation nobody expanded
    "...",
    "secret-for-example-purposes-only-0123456789",
]


def _load(**values: str) -> None:
    load_settings(environ={}, **values)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_a_placeholder_is_refused_by_name_without_echoing_it(field: str, value: str) -> None:
    name = f"STAGEDOOR_{field.upper()}"
    with pytest.raises(SettingsError, match=rf"^invalid {name}: it (is a placeholder|has \d+ characters)") as refused:
        _load(**{field: value})
    assert value not in str(refused.value)
    assert "token_urlsafe" in str(refused.value)  # says how to make a good one


@pytest.mark.parametrize("field", FIELDS)
def test_a_secret_shorter_than_32_characters_is_refused_and_32_random_ones_load(field: str) -> None:
    assert SECRET_MIN_CHARS == 32
    short = secrets.token_urlsafe(64)[:31]
    name = f"STAGEDOOR_{field.upper()}"
    with pytest.raises(SettingsError, match=rf"^invalid {name}: it has 31 characters, fewer than 32"):
        _load(**{field: short})
    settings = load_settings(environ={name: short + "A"})
    assert len(getattr(settings, field)) == 32
    # unset stays allowed here: `serve` refuses it for the components that need it
    assert getattr(load_settings(environ={}), field) is None


def test_the_admin_key_and_the_queue_secret_must_differ() -> None:
    value = secrets.token_urlsafe(32)
    with pytest.raises(SettingsError, match=r"^invalid STAGEDOOR_ADMIN_API_KEY: it equals STAGEDOOR_QUEUE_TOKEN_SEC"):
        _load(admin_api_key=value, queue_token_secret=value)


def test_previous_queue_secrets_follow_the_same_rules_and_make_sense() -> None:
    current, old = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    name = "STAGEDOOR_QUEUE_TOKEN_PREVIOUS_SECRETS"
    settings = load_settings(environ={"STAGEDOOR_QUEUE_TOKEN_SECRET": current, name: f" {old} , "})
    assert settings.queue_token_previous_secrets.strip(" ,") == old
    refusals = {
        f"{old},replace-with-a-random-value": "secret 2 is a placeholder",
        "short-one": "secret 1 has 9 characters",
        current: "secret 1 is the current STAGEDOOR_QUEUE_TOKEN_SECRET",
        f"{old},{old}": "secret 2 is listed twice",
        ",".join(secrets.token_urlsafe(32) for _ in range(5)): "5 secrets, at most 4",
    }
    for spec, reason in refusals.items():
        with pytest.raises(SettingsError, match=f"^invalid {name}: {reason}") as refused:
            _load(queue_token_secret=current, queue_token_previous_secrets=spec)
        assert old not in str(refused.value) and current not in str(refused.value)
    with pytest.raises(SettingsError, match=f"^{name} is set but STAGEDOOR_QUEUE_TOKEN_SECRET is not"):
        _load(queue_token_previous_secrets=old)


@pytest.mark.parametrize(("component", "field"), [("waitingroom", "queue_token_secret"),
                                                  ("ticketing", "admin_api_key")])
def test_serve_refuses_to_start_with_the_env_example_placeholder(component: str, field: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEDOOR_")}
    env |= {"STAGEDOOR_REDIS_URL": "redis://127.0.0.1:1/0", "STAGEDOOR_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
            "STAGEDOOR_SIGNING_KEYS_DIR": "/nonexistent", "STAGEDOOR_ADMIN_API_KEY": secrets.token_urlsafe(32),
            "STAGEDOOR_QUEUE_TOKEN_SECRET": secrets.token_urlsafe(32)}
    env[f"STAGEDOOR_{field.upper()}"] = "replace-with-a-random-value"
    result = subprocess.run([sys.executable, "-m", "stagedoor.cli", "serve", component], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"invalid STAGEDOOR_{field.upper()}: it is a placeholder" in result.stderr
    assert "replace-with-a-random-value" not in result.stderr + result.stdout
