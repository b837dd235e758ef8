"""The test harness: real Redis and real PostgreSQL for every test.

The fixtures live in tests/support/ (see its __init__ for the map) and are registered here, once,
as plugins: ``make_settings(**overrides)``, ``service_client(name)``, ``create_user``,
``make_event``, ``shop`` and the servers under them are available to every test. A package's
conftest keeps only the fixtures used in that package alone; helpers are imported from
``tests.support.*``, never from a test module or a conftest (tests/test_layout.py checks it).
"""

import pytest

pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.servers",
    "tests.support.settings",
    "tests.support.services",
    "tests.support.accounts",
    "tests.support.events",
    "tests.support.shop",
    "tests.support.localstripe",
    "tests.support.payments",
]
