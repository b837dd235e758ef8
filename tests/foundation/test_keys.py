from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from stagedoor.keys import InvalidToken, KeyRing, write_new_key


def _claims(**over: object) -> dict[str, object]:
    claims: dict[str, object] = {"sub": "v1", "aud": "ticketing", "exp": int(time.time()) + 60, "jti": "j"}
    claims.update(over)
    return claims


def test_a_signed_token_verifies_for_its_audience() -> None:
    ring = KeyRing.generate()
    token = ring.sign(_claims())
    assert ring.verify(token, "ticketing")["sub"] == "v1"
    assert jwt.get_unverified_header(token)["kid"] == ring.signing_kid


@pytest.mark.parametrize("mutate", ["wrong_audience", "expired", "tampered", "alg_none", "hs256_with_public_key",
                                    "es256", "unknown_kid", "garbage"])
def test_forged_or_stale_tokens_are_rejected(mutate: str) -> None:
    ring = KeyRing.generate()
    token = ring.sign(_claims())
    if mutate == "wrong_audience":
        token = ring.sign(_claims(aud="stagedoor-api"))
    elif mutate == "expired":
        token = ring.sign(_claims(exp=int(time.time()) - 1))
    elif mutate == "tampered":
        head, body, sig = token.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=="))
        payload["sub"] = "someone-else"
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        token = f"{head}.{body}.{sig}"
    elif mutate == "alg_none":
        token = jwt.encode(_claims(), None, algorithm="none", headers={"kid": ring.signing_kid})
    elif mutate == "hs256_with_public_key":
        x = ring.jwks()["keys"][0]["x"]
        token = jwt.encode(_claims(), x, algorithm="HS256", headers={"kid": ring.signing_kid})
    elif mutate == "es256":
        token = jwt.encode(_claims(), generate_private_key(SECP256R1()), algorithm="ES256",
                           headers={"kid": ring.signing_kid})
    elif mutate == "unknown_kid":
        token = KeyRing.generate().sign(_claims())
    elif mutate == "garbage":
        token = "not.a.jwt"
    with pytest.raises(InvalidToken):
        ring.verify(token, "ticketing")


def test_a_cached_verification_still_expires_with_the_clock() -> None:
    ring = KeyRing.generate()
    exp = int(time.time()) + 30
    token = ring.sign(_claims(exp=exp))
    assert ring.verify(token, "ticketing")
    with pytest.raises(InvalidToken, match="expired"):
        ring.verify(token, "ticketing", now=exp + 1)


def test_rotation_keeps_tokens_of_the_previous_key_valid(tmp_path) -> None:
    first = KeyRing.from_dir(tmp_path, create=True)
    old_token = first.sign(_claims())
    time.sleep(0.01)
    new_path = write_new_key(tmp_path)
    import os
    os.utime(new_path, (time.time() + 5, time.time() + 5))
    rotated = KeyRing.from_dir(tmp_path)
    assert rotated.signing_kid != first.signing_kid
    assert rotated.verify(old_token, "ticketing")["sub"] == "v1"
    assert {k["kid"] for k in rotated.jwks()["keys"]} == {first.signing_kid, rotated.signing_kid}


def test_jwks_publishes_only_public_material() -> None:
    ring = KeyRing.generate()
    (key,) = ring.jwks()["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    assert "d" not in key
