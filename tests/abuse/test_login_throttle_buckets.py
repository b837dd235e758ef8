"""The failed-login throttle counts per IP bucket, as the rate limits do: an IPv6 client by its
/64 (every address of one subscriber line is one guesser), an IPv4 client by its address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stagedoor.settings import Settings
from tests.support.accounts import FAST_ACCOUNTS, GOOD_PASSWORD, login, new_email, register

PER_IP = 3


async def _client(service_client: Callable[..., Any], make_settings: Callable[..., Settings]) -> Any:
    settings = make_settings(**FAST_ACCOUNTS, login_failures_per_ip=PER_IP, login_failures_per_account=1000,
                             login_failure_window_s=600)
    return await service_client("ticketing", settings)


async def _ip_counters(redis_client: Any, redis_prefix: str) -> dict[str, int]:
    keys = [k.decode() async for k in redis_client.scan_iter(match=f"{redis_prefix}:loginfail:ip:*")]
    return {key.removeprefix(f"{redis_prefix}:loginfail:ip:"): int(await redis_client.get(key)) for key in keys}


async def test_failures_from_many_addresses_of_one_ipv6_64_lock_the_whole_64_and_no_other(
        service_client: Any, make_settings: Any, redis_client: Any, redis_prefix: str) -> None:
    client = await _client(service_client, make_settings)
    target = new_email()
    await register(client, target)
    # a guesser rotating through its /64: a fresh address (and a fresh account) for every guess
    for i in range(PER_IP):
        resp = await login(client, new_email(), "Spring-2026-guess", ip=f"2001:db8:7:42:{i:x}::{i + 1:x}")
        assert resp.status == 400
    assert await _ip_counters(redis_client, redis_prefix) == {"2001:db8:7:42::/64": PER_IP}

    # any other address of that /64 is refused before its password is checked, even the right one
    for address in ("2001:db8:7:42:ffff:ffff:ffff:fffe", "2001:db8:7:42::1", "[2001:db8:7:42::9]:443"):
        resp = await login(client, target, GOOD_PASSWORD, ip=address)
        assert resp.status == 429, address
        assert 1 <= int(resp.headers["Retry-After"]) <= 600
        assert (await resp.json())["error"] == "slow_down"
    # the refusals counted nothing more (they were answered before any password check)
    assert await _ip_counters(redis_client, redis_prefix) == {"2001:db8:7:42::/64": PER_IP}

    # the neighbouring /64 (the same /48, another line) is unaffected
    resp = await login(client, target, GOOD_PASSWORD, ip="2001:db8:7:43::1")
    assert resp.status == 200, await resp.text()
    assert "access_token" in await resp.json()


async def test_ipv4_clients_are_counted_per_address(
        service_client: Any, make_settings: Any, redis_client: Any, redis_prefix: str) -> None:
    client = await _client(service_client, make_settings)
    target = new_email()
    await register(client, target)
    for _ in range(PER_IP):
        assert (await login(client, new_email(), "Spring-2026-guess", ip="198.51.100.77")).status == 400
    assert (await login(client, target, GOOD_PASSWORD, ip="198.51.100.77")).status == 429
    # the next address of the same /24 is another client (NAT: a whole venue can sit behind one /24)
    assert (await login(client, target, GOOD_PASSWORD, ip="198.51.100.78")).status == 200
    # an IPv4-mapped IPv6 address is the IPv4 client itself
    assert (await login(client, target, GOOD_PASSWORD, ip="::ffff:198.51.100.77")).status == 429
    assert await _ip_counters(redis_client, redis_prefix) == {"198.51.100.77": PER_IP}

