"""Queue tokens: the precomputed-pad HMAC equals the standard library's, and the token rules hold."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagedoor.queue_tokens import (
    InvalidQueueToken,
    _HmacSha256,
    derive_key,
    key_id,
    mint_queue_token,
    verify_queue_token,
)

SECRET = "a-queue-token-secret-of-enough-length-0001"


@settings(max_examples=300)
@given(key=st.binary(min_size=0, max_size=200), message=st.binary(max_size=300))
def test_the_precomputed_hmac_is_rfc_2104_hmac_sha256(key: bytes, message: bytes) -> None:
    # keys shorter than, equal to and longer than the 64-byte block (hashed first) alike
    assert _HmacSha256(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_one_signer_gives_the_same_mac_every_time() -> None:
    signer = _HmacSha256(b"k" * 32)
    assert signer.digest(b"one") == signer.digest(b"one") != signer.digest(b"two")


def test_a_minted_token_is_the_documented_hmac_of_its_body() -> None:
    token = mint_queue_token(SECRET, visitor_id="1a_abcd1234", room="r1", now_s=1_800_000_000)
    body, _, mac = token.rpartition(".")
    assert body == f"q2.1a_abcd1234.r1.1800000000.{key_id(SECRET)}"
    expected = hmac.new(derive_key(SECRET), body.encode(), hashlib.sha256).digest()
    assert mac == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    claims = verify_queue_token(SECRET, token, room="r1", now_s=1_800_000_010, ttl_s=3600)
    assert (claims.visitor_id, claims.room, claims.issued_at_s) == ("1a_abcd1234", "r1", 1_800_000_000)


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),         # tampered MAC
    lambda t: t.replace(".r1.", ".r2."),                         # another room's claim, same MAC
    lambda t: t.replace("1a_abcd1234", "1b_abcd1234"),          # another visitor
])
def test_a_changed_token_does_not_verify(mutate: object) -> None:
    token = mint_queue_token(SECRET, visitor_id="1a_abcd1234", room="r1", now_s=1_800_000_000)
    with pytest.raises(InvalidQueueToken):
        verify_queue_token(SECRET, mutate(token), room="r1", now_s=1_800_000_000, ttl_s=3600)  # type: ignore[operator]


def test_another_secret_does_not_verify() -> None:
    token = mint_queue_token(SECRET, visitor_id="1a_abcd1234", room="r1", now_s=1_800_000_000)
    with pytest.raises(InvalidQueueToken, match="unknown or retired key"):
        verify_queue_token(SECRET + "x", token, room="r1", now_s=1_800_000_000, ttl_s=3600)
