"""Builders and fixtures shared by the tests.

Test modules import helpers from here (``from tests.support.events import buy``), never from
another test module or a conftest. Modules that define fixtures are registered once, as pytest
plugins, by ``tests/conftest.py``; a package's own conftest keeps only fixtures used in that
package alone.

- ``servers``: the Redis and PostgreSQL the tests run on (a migrated template database cloned
  per test, a key prefix per test, a Redis Cluster for the cluster tests)
- ``settings``: ``make_settings(**overrides)``, ``settings``, the key ring, the admin key
- ``services``: ``service_client(name)``, a service app served through HotSite
- ``accounts``: users inserted directly (``create_user``) and the accounts HTTP helpers
- ``events``: event bodies and seat maps, ``make_event``, holds and purchases over HTTP
- ``shop``: the ticketing app on a manual clock (``shop``, ``clocked_client``)
- ``world``: the callers of the authorization matrix and the resources they act on
- ``authz``: API clients with chosen owner and scopes (real tokens), problem answers to compare
- ``rooms``: the waiting room's stores on a fixed clock, room configs, rooms over the admin API
- ``bus``: outbox rows, stream reads, a recording handler, the dashboard's consumer run once
- ``notifications``: SMTP sinks, bus envelopes, bulk-inserted events and orders
- ``stripe_webhooks``: Stripe events signed as Stripe signs them, posted to the shop; the worker applying them
- ``payments``: a payment gateway double over HTTP, the shop and the worker wired to it
- ``localstripe``: a local Stripe-compatible server (localstripe), test cards, the fan's 3-D Secure step
- ``abuse``, ``browser``, ``cluster``, ``ops``: helpers of those areas' tests
- ``stack``, ``up_process``: real service processes (``stagedoor serve``, ``stagedoor up``)
"""
