"""Ed25519 signing keys with ``kid``s, JWT signing and cached verification, JWKS.

A key directory holds ``<kid>.pem`` Ed25519 private keys (PKCS#8). The newest file signs;
every file verifies, so rotation is: add a new key, restart, delete the old file once the
longest-lived token it signed has expired. All three services load the same directory.

Only ``EdDSA`` is accepted on verification: ``alg: none`` and HS/ES switching are rejected
by construction (PyJWT is given the algorithm list, and keys are typed Ed25519 objects).
Verified tokens are cached until they expire: an asymmetric verify costs more CPU than a
whole lean request (PyJWT verifies 4.7-8.4 k EdDSA tokens a second on one core of a 2-core
machine), so each token is verified once per process.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stagedoor.errors import Unauthorized

ALGORITHM = "EdDSA"


class InvalidToken(Unauthorized):
    code = "invalid-token"
    title = "Invalid or expired token"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def kid_for(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class KeyRing:
    def __init__(self, signing_key: Ed25519PrivateKey, verify_keys: dict[str, Ed25519PublicKey],
                 cache_size: int = 100_000) -> None:
        self._signing_key = signing_key
        self.signing_kid = kid_for(signing_key.public_key())
        self._verify = dict(verify_keys)
        self._verify.setdefault(self.signing_kid, signing_key.public_key())
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    # -- construction
    @classmethod
    def generate(cls) -> KeyRing:
        return cls(Ed25519PrivateKey.generate(), {})

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], create: bool = False) -> KeyRing:
        path = Path(directory)
        if create:
            path.mkdir(parents=True, exist_ok=True)
            if not any(path.glob("*.pem")):
                write_new_key(path)
        files = sorted(path.glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name))
        if not files:
            raise FileNotFoundError(f"no *.pem signing keys in {path}")
        keys: list[Ed25519PrivateKey] = []
        for file in files:
            key = serialization.load_pem_private_key(file.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{file} is not an Ed25519 private key")
            keys.append(key)
        return cls(keys[-1], {kid_for(k.public_key()): k.public_key() for k in keys})

    # -- signing
    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return jwt.encode(claims, self._signing_key, algorithm=ALGORITHM, headers={"kid": self.signing_kid, "typ": typ})

    # -- verification
    def verify(self, token: str, audience: str, now: float | None = None) -> dict[str, Any]:
        """Return the claims of a valid token for ``audience``; raise InvalidToken otherwise."""
        now = time.time() if now is None else now
        cache_key = audience + "\x00" + token
        claims = self._cache.get(cache_key)
        if claims is not None:
            if claims["exp"] > now:
                self._cache.move_to_end(cache_key)
                return claims
            del self._cache[cache_key]
            raise InvalidToken("token expired")
        if len(token) > 4096:
            raise InvalidToken("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported token algorithm")
        key = self._verify.get(str(header.get("kid")))
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=audience,
                options={"require": ["exp", "aud", "sub"], "verify_iat": False},
                leeway=0,
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("invalid token") from exc
        if claims["exp"] <= now:  # PyJWT uses wall time; honour an injected clock too
            raise InvalidToken("token expired")
        self._cache[cache_key] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def forget(self, token: str, audience: str) -> None:
        """Drop a cached verification (after revoking what the token stands for)."""
        self._cache.pop(audience + "\x00" + token, None)

    # -- publication
    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, public in self._verify.items():
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            keys.append({"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": kid, "alg": ALGORITHM, "use": "sig"})
        return {"keys": keys}


def write_new_key(directory: Path) -> Path:
    """Create a new Ed25519 key file (0600) in ``directory``; it becomes the signing key."""
    key = Ed25519PrivateKey.generate()
    kid = kid_for(key.public_key())
    path = directory / f"{int(time.time())}-{kid}.pem"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return path
