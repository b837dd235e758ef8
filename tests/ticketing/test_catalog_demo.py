"""The demo seeder of `stagedoor up`: an organizer and a ~2,000-seat arena on sale, idempotent."""

from __future__ import annotations

from ticketing.demo import DEMO_EMAIL, seed_demo


async def test_seeding_twice_gives_one_organizer_and_one_loaded_event(make_settings, keyring, tmp_path, db,
                                                                      service_client) -> None:
    settings = make_settings(data_dir=str(tmp_path / "data"))
    first: dict[str, str] = {}
    lines = await seed_demo(settings, keyring, first)
    second: dict[str, str] = {}
    again = await seed_demo(settings, keyring, second)
    assert first["event_id"] == second["event_id"]
    assert lines == again and any(DEMO_EMAIL in line for line in lines)
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", DEMO_EMAIL) == 1
    client = await service_client("ticketing", settings)
    event = await (await client.get(f"/api/events/{first['event_id']}")).json()
    assert event["status"] == "on_sale" and [t["code"] for t in event["tiers"]] == ["VIP", "CAT1", "CAT2"]
    seats = sum(t["available"] for t in event["tiers"])
    assert 1_500 <= seats <= 2_500
