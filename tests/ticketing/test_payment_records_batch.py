"""The first charge attempts of one event-loop turn are recorded by one statement (PaymentRecords.open):
each purchase gets what the one-by-one OPEN would have given it, on real PostgreSQL and through the shop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from stagedoor.errors import DependencyUnavailable
from stagedoor.web import DB
from tests.support.events import buy, hold_seats
from ticketing.appkeys import PURCHASES
from ticketing.payments.records import NewPayment, PaymentRecords, purchase_key


def _payment(user_id: str, key: str, hold_id: str = "7-h1", amount: int = 4000) -> NewPayment:
    return NewPayment(purchase_key=purchase_key(user_id, key, hold_id), user_id=user_id, gateway="mock",
                      hold_id=hold_id, event_id=7, idempotency_key=key, fingerprint="fp", email="fan@example.test",
                      subtotal=amount, discount=0, discount_code_id=None, amount=amount, currency="EUR")


class CountingPool:
    """The real pool, counting the statements sent through it."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.statements: list[str] = []

    async def fetch(self, query: str, *args: Any) -> Any:
        self.statements.append(query)
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.statements.append(query)
        return await self.pool.fetchrow(query, *args)


async def test_first_attempts_of_one_turn_are_one_statement_and_each_gets_its_first_key(shop: Any,
                                                                                        create_user: Any) -> None:
    client = await shop()
    fans = [await create_user() for _ in range(20)]
    counting = CountingPool(client.app[DB])
    records = PaymentRecords(counting)  # type: ignore[arg-type]
    opened = await asyncio.gather(*(records.open(_payment(f.id, "k1")) for f in fans))
    assert len(counting.statements) == 1
    assert [(o.gateway_key, o.status, o.inserted) for o in opened] == [
        (_payment(f.id, "k1").purchase_key + ":0", "pending", True) for f in fans]
    rows = await client.app[DB].fetch("SELECT user_id::text AS user_id, seq, state, amount FROM charge_attempts")
    assert sorted((r["user_id"], r["seq"], r["state"], r["amount"]) for r in rows) == sorted(
        (f.id, 0, "pending", 4000) for f in fans)


async def test_a_retry_in_the_turn_takes_the_one_by_one_path_and_reuses_or_moves_on(shop: Any,
                                                                                   create_user: Any) -> None:
    client = await shop()
    fan, other = await create_user(), await create_user()
    records = PaymentRecords(client.app[DB])
    first = await records.open(_payment(fan.id, "again"))
    assert first is not None and first.inserted
    # in one turn: the same purchase again (its attempt is pending: reused), a new one, and a purchase whose
    # first attempt failed (it moves on to seq 1)
    failed = await records.open(_payment(other.id, "declined"))
    assert failed is not None and await records.mark_failed(failed.gateway_key, "declined")
    counting = CountingPool(client.app[DB])
    records = PaymentRecords(counting)  # type: ignore[arg-type]
    again, new, next_ = await asyncio.gather(records.open(_payment(fan.id, "again")),
                                             records.open(_payment(fan.id, "new")),
                                             records.open(_payment(other.id, "declined")))
    assert again is not None and (again.gateway_key, again.status, again.inserted) == (first.gateway_key, "pending",
                                                                                       False)
    assert new is not None and new.gateway_key.endswith(":0") and new.inserted
    assert next_ is not None and next_.gateway_key == _payment(other.id, "declined").purchase_key + ":1"
    assert next_.inserted
    assert len(counting.statements) == 3  # one for the turn's first attempts, then one each for the two others


async def test_a_committed_purchase_opened_again_is_its_order_not_a_new_charge(shop: Any, make_event: Any,
                                                                             create_user: Any) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    assert (await buy(client, fan, hold["hold_id"], key="once")).status == 201
    # the attempt was settled by the purchase statement (deleted; its payments row stands)
    assert await client.app[DB].fetchval("SELECT count(*) FROM charge_attempts") == 0
    records = client.app[PURCHASES].records
    again = await records.open(_payment(fan.id, "once", hold_id=hold["hold_id"]))
    assert again is not None and (again.status, again.inserted) == ("succeeded", False)
    assert await client.app[DB].fetchval("SELECT count(*) FROM charge_attempts") == 0
    assert client.gateway.charge_count == 1


async def test_postgresql_unreachable_fails_every_first_attempt_of_the_turn_and_records_nothing(
        shop: Any, create_user: Any, pg_server_url: str) -> None:
    import asyncpg

    client = await shop()
    fans = [await create_user() for _ in range(3)]
    closed = await asyncpg.create_pool(pg_server_url, min_size=1, max_size=1)
    await closed.close()  # what the purchase meets when PostgreSQL went away: the pool refuses
    records = PaymentRecords(closed)
    results = await asyncio.gather(*(records.open(_payment(f.id, "down")) for f in fans), return_exceptions=True)
    assert all(isinstance(r, DependencyUnavailable) for r in results), results
    assert await client.app[DB].fetchval("SELECT count(*) FROM charge_attempts") == 0


@pytest.mark.parametrize("n", [1, 300])
async def test_a_turn_larger_than_a_statement_is_split_and_every_purchase_is_recorded(shop: Any, create_user: Any,
                                                                                     n: int) -> None:
    client = await shop()
    fan = await create_user()
    counting = CountingPool(client.app[DB])
    records = PaymentRecords(counting)  # type: ignore[arg-type]
    opened = await asyncio.gather(*(records.open(_payment(fan.id, f"k{i}")) for i in range(n)))
    assert all(o is not None and o.inserted for o in opened)
    assert len(counting.statements) == (1 if n == 1 else 2)
    assert await client.app[DB].fetchval("SELECT count(*) FROM charge_attempts") == n


async def test_one_row_postgresql_refuses_fails_alone_and_the_rest_of_its_turn_is_recorded(shop: Any,
                                                                                          create_user: Any) -> None:
    client = await shop()
    fans = [await create_user() for _ in range(4)]
    counting = CountingPool(client.app[DB])
    records = PaymentRecords(counting)  # type: ignore[arg-type]
    bad = msgspec.structs.replace(_payment(fans[0].id, "odd"), currency="EURO")  # not a char(3)
    results = await asyncio.gather(records.open(bad), *(records.open(_payment(f.id, "fine")) for f in fans[1:]),
                                   return_exceptions=True)
    assert isinstance(results[0], DependencyUnavailable)
    assert all(not isinstance(r, BaseException) and r is not None and r.inserted for r in results[1:]), results
    # the turn's statement, then the one-by-one OPEN of each purchase
    assert len(counting.statements) == 1 + len(fans)
    rows = await client.app[DB].fetch("SELECT user_id::text AS user_id FROM charge_attempts")
    assert sorted(r["user_id"] for r in rows) == sorted(f.id for f in fans[1:])


async def test_a_batch_whose_answer_was_lost_is_found_by_the_one_by_one_open(shop: Any, create_user: Any) -> None:
    """The batch wrote its rows but its caller saw an error (the connection died after the commit): each
    purchase then reuses its attempt, never opens a second one."""
    client = await shop()
    fan = await create_user()

    class LostAnswer(CountingPool):
        async def fetch(self, query: str, *args: Any) -> Any:
            await super().fetch(query, *args)
            raise ConnectionResetError("the answer was lost")

    records = PaymentRecords(LostAnswer(client.app[DB]))  # type: ignore[arg-type]
    opened = await records.open(_payment(fan.id, "lost"))
    assert opened is not None and (opened.gateway_key.endswith(":0"), opened.status, opened.inserted) == (
        True, "pending", False)
    assert await client.app[DB].fetchval("SELECT count(*) FROM charge_attempts") == 1
