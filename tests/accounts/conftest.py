"""Fixtures of the accounts tests: a ticketing client with cheap argon2 parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.settings import Settings
from tests.support.accounts import FAST_ACCOUNTS


@pytest.fixture
def accounts_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return make_settings(**{**FAST_ACCOUNTS, **overrides})
    return make


@pytest.fixture
async def client(service_client: Callable[..., Any], accounts_settings: Callable[..., Settings]) -> Any:
    return await service_client("ticketing", accounts_settings())
