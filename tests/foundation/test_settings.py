from __future__ import annotations

import pytest

from stagedoor.settings import SettingsError, load_settings


def test_defaults_give_the_contract_ports() -> None:
    settings = load_settings(environ={})
    assert (settings.waitingroom_port, settings.ticketing_port, settings.admission_port) == (8080, 8081, 8082)
    assert settings.hold_ttl_s == 600
    assert settings.max_body_bytes == 64 * 1024
    assert settings.cookie_secure is True


def test_environment_strings_are_converted() -> None:
    settings = load_settings(environ={
        "STAGEDOOR_TICKETING_PORT": "9001", "STAGEDOOR_COOKIE_SECURE": "false",
        "STAGEDOOR_REDIS_URL": "redis://r:6379/1",
    })
    assert settings.ticketing_port == 9001
    assert settings.cookie_secure is False
    assert settings.redis_url == "redis://r:6379/1"


def test_an_invalid_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="STAGEDOOR_TICKETING_PORT"):
        load_settings(environ={"STAGEDOOR_TICKETING_PORT": "eighty"})
    with pytest.raises(SettingsError, match="STAGEDOOR_HOLD_TTL_S"):
        load_settings(environ={"STAGEDOOR_HOLD_TTL_S": "0"})
    with pytest.raises(SettingsError, match="STAGEDOOR_LOG_LEVEL"):
        load_settings(environ={"STAGEDOOR_LOG_LEVEL": "LOUD"})


def test_an_unknown_variable_fails_instead_of_keeping_a_default() -> None:
    with pytest.raises(SettingsError, match="STAGEDOOR_HOLD_TTL_SECONDS"):
        load_settings(environ={"STAGEDOOR_HOLD_TTL_SECONDS": "30"})


def test_test_harness_variables_are_not_settings() -> None:
    settings = load_settings(environ={"STAGEDOOR_TEST_REDIS_URL": "redis://x", "OTHER": "1"})
    assert settings.redis_url is None


def test_cli_reports_a_bad_setting_by_name(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from stagedoor.cli import main

    monkeypatch.setenv("STAGEDOOR_ADMISSION_PORT", "-1")
    assert main(["migrate"]) == 2
    assert "STAGEDOOR_ADMISSION_PORT" in capsys.readouterr().err


def test_serve_refuses_to_start_without_its_stores(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from stagedoor.cli import main

    for name in ("STAGEDOOR_REDIS_URL", "STAGEDOOR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "ticketing"]) == 2
    err = capsys.readouterr().err
    assert "STAGEDOOR_REDIS_URL" in err and "STAGEDOOR_DATABASE_URL" in err
