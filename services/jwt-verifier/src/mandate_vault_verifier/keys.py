"""Trusted public keys: JWKs turned once into PyJWT key objects, one per allowed algorithm.

A key may verify a token only with an algorithm that (a) the issuer allows, (b) fits the key's
type and curve, and (c) the JWK's own `alg` names, if present. The token's `alg` never chooses
the key type: it only picks among the key objects built here, each bound to one algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

SUPPORTED_ALGORITHMS: Final = frozenset({"RS256", "PS256", "ES256", "ES384", "EdDSA"})
MIN_RSA_BITS: Final = 2048
# (kty, crv) -> algorithms that key can serve
_ALGORITHMS_BY_KEY_TYPE: Final[Mapping[tuple[str, str | None], frozenset[str]]] = {
    ("RSA", None): frozenset({"RS256", "PS256"}),
    ("EC", "P-256"): frozenset({"ES256"}),
    ("EC", "P-384"): frozenset({"ES384"}),
    ("OKP", "Ed25519"): frozenset({"EdDSA"}),
    ("OKP", "Ed448"): frozenset({"EdDSA"}),
}
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class InvalidKey(ValueError):
    """A JWK that may not be trusted (private, symmetric, weak, or unusable here)."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    kid: str
    by_algorithm: Mapping[str, jwt.PyJWK]

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(self.by_algorithm)


def key_algorithms(jwk: Mapping[str, Any]) -> frozenset[str]:
    """The algorithms a JWK's type and curve can serve (empty when unsupported)."""
    kty = jwk.get("kty")
    crv = None if kty == "RSA" else jwk.get("crv")
    if not isinstance(kty, str) or not (crv is None or isinstance(crv, str)):
        return frozenset()
    return _ALGORITHMS_BY_KEY_TYPE.get((kty, crv), frozenset())


def build_key(jwk: Any, allowed: frozenset[str], kid: str | None = None) -> TrustedKey:
    """A `TrustedKey` for ``jwk`` usable with the algorithms of ``allowed`` that fit it."""
    if not isinstance(jwk, Mapping):
        raise InvalidKey("a key must be a JWK object")
    kid = kid if kid is not None else jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidKey("a key needs a non-empty string kid")
    _check_public_signing_key(jwk, kid)
    algorithms = key_algorithms(jwk) & allowed
    declared = jwk.get("alg")
    if declared is not None:
        algorithms &= {declared}
    if not algorithms:
        raise InvalidKey(f"key {kid!r}: no allowed algorithm fits its type")
    try:
        by_algorithm = {alg: jwt.PyJWK(dict(jwk), algorithm=alg) for alg in sorted(algorithms)}
        for key in by_algorithm.values():
            key.Algorithm.prepare_key(key.key)  # PyJWT's own key-type and curve checks
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidKey(f"key {kid!r}: {exc}") from None
    for key in by_algorithm.values():
        if isinstance(key.key, RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
            raise InvalidKey(f"key {kid!r}: RSA keys need at least {MIN_RSA_BITS} bits")
    return TrustedKey(kid=kid, by_algorithm=by_algorithm)


def _check_public_signing_key(jwk: Mapping[str, Any], kid: str) -> None:
    if _PRIVATE_MEMBERS & set(jwk):
        raise InvalidKey(f"key {kid!r}: private or symmetric key material is never trusted")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise InvalidKey(f"key {kid!r}: use must be 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise InvalidKey(f"key {kid!r}: key_ops must include 'verify'")
