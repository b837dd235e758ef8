"""Choosing the payment gateway: Stripe's keys are checked for their kind and mode when the
settings load (naming the variable, never echoing the value), and a component that charges
refuses to start on Stripe without a secret key."""

from __future__ import annotations

import secrets

import pytest

from stagedoor.settings import SettingsError, load_settings
from ticketing.payments.configured import gateway_from_settings
from ticketing.payments.gateway import MockGateway
from ticketing.payments.stripe_gateway import StripeGateway


def token() -> str:
    return secrets.token_urlsafe(32)


def test_the_mock_is_the_default_and_stripe_is_chosen_by_name() -> None:
    assert isinstance(gateway_from_settings(load_settings(environ={})), MockGateway)
    settings = load_settings(environ={"STAGEDOOR_PAYMENT_GATEWAY": "stripe",
                                      "STAGEDOOR_STRIPE_API_KEY": "sk_test_" + token(),
                                      "STAGEDOOR_STRIPE_API_BASE": "http://127.0.0.1:8420"})
    gateway = gateway_from_settings(settings)
    assert isinstance(gateway, StripeGateway) and gateway.api_base == "http://127.0.0.1:8420"
    with pytest.raises(SettingsError, match="STAGEDOOR_PAYMENT_GATEWAY"):
        load_settings(environ={"STAGEDOOR_PAYMENT_GATEWAY": "paypal"})


def test_stripe_without_a_secret_key_loads_but_cannot_charge() -> None:
    settings = load_settings(environ={"STAGEDOOR_PAYMENT_GATEWAY": "stripe"})  # `stagedoor up` fills it in
    with pytest.raises(SettingsError, match=r"^STAGEDOOR_PAYMENT_GATEWAY=stripe needs STAGEDOOR_STRIPE_API_KEY"):
        gateway_from_settings(settings)


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("STAGEDOOR_STRIPE_API_KEY", "pk_live_" + "a" * 40, "is not a secret key"),
    ("STAGEDOOR_STRIPE_API_KEY", "sk_test_short", "has 13 characters"),
    ("STAGEDOOR_STRIPE_API_KEY", "sk_live_replace_with_your_key_from_the_dashboard", "is a placeholder"),
    ("STAGEDOOR_STRIPE_API_KEY", "4eC39HqLyjWDarjtT1zdp7dc4eC39HqLyjWDarjtT1zdp7dc", "is not a secret key"),
    ("STAGEDOOR_STRIPE_WEBHOOK_SECRET", "sk_test_" + "b" * 40, "is not a webhook signing secret"),
    ("STAGEDOOR_STRIPE_WEBHOOK_SECRET", "whsec_short", "has 11 characters"),
    ("STAGEDOOR_STRIPE_PUBLISHABLE_KEY", "sk_test_" + "c" * 40, "is not a publishable key"),
])
def test_a_stripe_value_of_the_wrong_kind_is_refused_by_name_without_echoing_it(name: str, value: str,
                                                                                problem: str) -> None:
    with pytest.raises(SettingsError, match=rf"^invalid {name}: it {problem}") as refused:
        load_settings(environ={name: value})
    assert value not in str(refused.value) and "Stripe dashboard" in str(refused.value)


def test_the_publishable_key_must_be_of_the_secret_keys_mode() -> None:
    with pytest.raises(SettingsError, match="STAGEDOOR_STRIPE_PUBLISHABLE_KEY is a test key but "
                                            "STAGEDOOR_STRIPE_API_KEY is a live key"):
        load_settings(environ={"STAGEDOOR_STRIPE_API_KEY": "sk_live_" + token(),
                               "STAGEDOOR_STRIPE_PUBLISHABLE_KEY": "pk_test_" + token()})
    settings = load_settings(environ={"STAGEDOOR_STRIPE_API_KEY": "rk_live_" + token(),
                                      "STAGEDOOR_STRIPE_PUBLISHABLE_KEY": "pk_live_" + token(),
                                      "STAGEDOOR_STRIPE_WEBHOOK_SECRET": "whsec_" + token()})
    assert settings.stripe_webhook_secret and settings.stripe_webhook_secret.startswith("whsec_")


@pytest.mark.parametrize("base", ["localhost:8420", "ftp://127.0.0.1", "http://127.0.0.1:8420?x=1", "http://a b"])
def test_the_api_base_must_be_an_http_url(base: str) -> None:
    with pytest.raises(SettingsError, match=r"^invalid STAGEDOOR_STRIPE_API_BASE"):
        load_settings(environ={"STAGEDOOR_STRIPE_API_BASE": base})


@pytest.mark.parametrize("component", ["ticketing", "worker"])
def test_serve_refuses_to_charge_with_stripe_without_a_secret_key(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  component: str) -> None:
    from stagedoor.cli import main

    for name, value in {"STAGEDOOR_REDIS_URL": "redis://127.0.0.1:1/0",
                        "STAGEDOOR_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
                        "STAGEDOOR_SIGNING_KEYS_DIR": "/nonexistent", "STAGEDOOR_ADMIN_API_KEY": token(),
                        "STAGEDOOR_PAYMENT_GATEWAY": "stripe"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STAGEDOOR_STRIPE_API_KEY", raising=False)
    assert main(["serve", component]) == 2
    assert "STAGEDOOR_PAYMENT_GATEWAY=stripe needs STAGEDOOR_STRIPE_API_KEY" in capsys.readouterr().err
