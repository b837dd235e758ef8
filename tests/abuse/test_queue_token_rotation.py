"""Rotating the queue token secret: the new secret signs, the previous ones still verify the
tokens they signed (found by the key id in the token, one MAC per verification), a removed
secret's tokens are refused, and a forged key id gets nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.queue_tokens import (
    InvalidQueueToken,
    QueueTokenKeys,
    derive_key,
    key_id,
    mint_queue_token,
    verify_queue_token,
)
from stagedoor.settings import Settings
from tests.support.rooms import PROBLEM, put_room

OLD, NEW, ATTACKER = (secrets.token_urlsafe(32) for _ in range(3))
NOW = 1_800_000_000
TTL = 3600


def _kid(token: str) -> str:
    return token.split(".")[4]


def _with_kid(token: str, kid: str) -> str:
    parts = token.split(".")
    parts[4] = kid
    return ".".join(parts)


def _verify(keys: QueueTokenKeys | str, token: str) -> str:
    return verify_queue_token(keys, token, room="r1", now_s=NOW + 5, ttl_s=TTL).visitor_id


# ---------------------------------------------------------------------------- the token rules

def test_new_signs_with_its_key_id_and_previous_secrets_still_verify() -> None:
    rotated = QueueTokenKeys(NEW, [OLD])
    assert rotated.kid == key_id(NEW) and rotated.kids == (key_id(NEW), key_id(OLD))
    old_token = mint_queue_token(OLD, visitor_id="1a_abcd1234", room="r1", now_s=NOW)
    new_token = mint_queue_token(rotated, visitor_id="1b_abcd1234", room="r1", now_s=NOW)
    assert (_kid(old_token), _kid(new_token)) == (key_id(OLD), key_id(NEW))
    assert _verify(rotated, old_token) == "1a_abcd1234"
    assert _verify(rotated, new_token) == "1b_abcd1234"
    # once the previous secret is dropped its tokens are refused; the new ones live on
    with pytest.raises(InvalidQueueToken, match="unknown or retired key"):
        _verify(QueueTokenKeys(NEW), old_token)
    assert _verify(QueueTokenKeys(NEW), new_token) == "1b_abcd1234"
    # and the old secret alone does not verify what the new one signed
    with pytest.raises(InvalidQueueToken, match="unknown or retired key"):
        _verify(OLD, new_token)


def test_each_step_of_a_rolling_rotation_verifies_what_its_neighbours_sign() -> None:
    """docs/operations.md: (1) add NEW as a previous secret, (2) swap, (3) drop OLD. Pods of two
    neighbouring steps serve side by side during a rolling update."""
    steps = [QueueTokenKeys(OLD), QueueTokenKeys(OLD, [NEW]), QueueTokenKeys(NEW, [OLD]), QueueTokenKeys(NEW)]
    for before, after in itertools.pairwise(steps):
        for signer, verifier in ((before, after), (after, before)):
            token = mint_queue_token(signer, visitor_id="1a_abcd1234", room="r1", now_s=NOW)
            assert _verify(verifier, token) == "1a_abcd1234", (steps.index(signer), steps.index(verifier))
    # only the last step, long after the swap, refuses what the first signed
    with pytest.raises(InvalidQueueToken, match="unknown or retired key"):
        _verify(steps[3], mint_queue_token(steps[0], visitor_id="1a_abcd1234", room="r1", now_s=NOW))


def test_a_forged_key_id_gets_nothing() -> None:
    rotated = QueueTokenKeys(NEW, [OLD])
    genuine = mint_queue_token(rotated, visitor_id="1a_abcd1234", room="r1", now_s=NOW)
    forged_by_attacker = mint_queue_token(ATTACKER, visitor_id="1a_abcd1234", room="r1", now_s=NOW)
    from_old = mint_queue_token(OLD, visitor_id="1a_abcd1234", room="r1", now_s=NOW)
    cases = {
        _with_kid(genuine, "AAAAAAAA"): "unknown or retired key",               # a kid nobody has
        forged_by_attacker: "unknown or retired key",                            # the attacker's own kid
        _with_kid(forged_by_attacker, key_id(NEW)): "signature does not verify",  # a real kid, a forged MAC
        _with_kid(genuine, key_id(OLD)): "signature does not verify",            # a real token, the other kid
        _with_kid(from_old, key_id(NEW)): "signature does not verify",
        _with_kid(genuine, key_id(NEW)[:7]): "malformed",
        genuine.replace("q2.", "q1.", 1): "malformed",                           # a kid where q1 has none
    }
    for token, reason in cases.items():
        with pytest.raises(InvalidQueueToken, match=reason):
            _verify(rotated, token)


def test_a_token_from_before_key_ids_verifies_under_the_signing_secret_only() -> None:
    body = "q1.1a_abcd1234.r1.1800000000"
    mac = base64.urlsafe_b64encode(hmac.new(derive_key(OLD), body.encode(), hashlib.sha256).digest())
    legacy = f"{body}.{mac.rstrip(b'=').decode()}"
    assert _verify(QueueTokenKeys(OLD), legacy) == "1a_abcd1234"
    with pytest.raises(InvalidQueueToken, match="signature does not verify"):
        _verify(QueueTokenKeys(NEW, [OLD]), legacy)
    # a q2 body without its kid is no legacy token
    with pytest.raises(InvalidQueueToken, match="malformed"):
        _verify(QueueTokenKeys(OLD), legacy.replace("q1.", "q2.", 1))


# ---------------------------------------------------------------------------- over HTTP

@pytest.fixture
def wr_settings_with(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(secret: str, previous: str = "") -> Settings:
        return make_settings(rate_limits_enabled=False, queue_token_secret=secret,
                             queue_token_previous_secrets=previous)
    return make


async def _status(client: Any, token: str) -> Any:
    return await client.get("/api/rooms/r1/status", headers={"Authorization": f"Bearer {token}"})


async def test_rotation_keeps_every_place_and_retiring_the_old_secret_refuses_its_tokens(
        service_client: Any, wr_settings_with: Callable[..., Settings], admin_headers: Any) -> None:
    before = wr_settings_with(OLD)
    adm = await service_client("admission", before)
    await put_room(adm, admin_headers, paused=True)  # paused: everyone keeps waiting, places stay put
    wr_before = await service_client("waitingroom", before)
    joined = []
    for _ in range(3):
        resp = await wr_before.post("/api/rooms/r1/join", json={}, headers={"Cookie": ""})
        assert resp.status == 201
        joined.append(await resp.json())
        wr_before.session.cookie_jar.clear()
    old_tokens = [j["queue_token"] for j in joined]
    assert {_kid(t) for t in old_tokens} == {key_id(OLD)}

    # rotate: NEW signs, OLD still verifies. Every fan keeps the place the old token names.
    wr_rotated = await service_client("waitingroom", wr_settings_with(NEW, OLD))
    for place, token in enumerate(old_tokens, start=1):
        resp = await _status(wr_rotated, token)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["position"] == place
    # a fan coming back re-joins with the old token: the same visitor, a token under the new secret
    resp = await wr_rotated.post("/api/rooms/r1/join", json={},
                                 headers={"Authorization": f"Bearer {old_tokens[0]}"})
    assert resp.status == 200
    rejoined = await resp.json()
    assert rejoined["visitor_id"] == joined[0]["visitor_id"] and rejoined["position"] == 1
    new_token = rejoined["queue_token"]
    assert _kid(new_token) == key_id(NEW)
    # a forged kid on a genuine token, and an attacker's token wearing our kid: 401
    forged = [_with_kid(old_tokens[1], "AAAAAAAA"),
              _with_kid(mint_queue_token(ATTACKER, visitor_id=joined[1]["visitor_id"], room="r1",
                                         now_s=int(time.time())), key_id(NEW)),
              _with_kid(old_tokens[1], key_id(NEW))]
    for token in forged:
        resp = await _status(wr_rotated, token)
        assert resp.status == 401 and resp.content_type == PROBLEM
        assert (await resp.json())["type"].endswith("/invalid-queue-token")

    # retire OLD: its tokens are refused, the new one works, and the place behind it is unchanged
    wr_after = await service_client("waitingroom", wr_settings_with(NEW))
    for token in old_tokens:
        resp = await _status(wr_after, token)
        assert resp.status == 401 and resp.content_type == PROBLEM
        body = await resp.json()
        assert body["type"].endswith("/invalid-queue-token") and "retired" in body["detail"]
        assert "WWW-Authenticate" in resp.headers
    resp = await _status(wr_after, new_token)
    assert resp.status == 200 and (await resp.json())["position"] == 1
    # the refusals changed nothing: the two fans whose old tokens were refused still hold places 2 and 3
    wr_check = await service_client("waitingroom", wr_settings_with(NEW, OLD))
    assert [(await (await _status(wr_check, t)).json())["position"] for t in old_tokens[1:]] == [2, 3]
