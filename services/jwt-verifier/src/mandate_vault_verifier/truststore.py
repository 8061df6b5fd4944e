"""The truststore: which issuers are trusted, with which algorithms and keys.

Format (``VERIFIER_TRUSTSTORE_PATH`` file or ``VERIFIER_TRUSTSTORE_JSON``)::

    {"issuers": [
      {"id": "did:web:bank.example.com", "algorithms": ["ES256"], "keys": [{<JWK with kid>}]},
      {"id": "did:web:other.example:path", "algorithms": ["EdDSA"], "resolve": "did:web"}
    ]}

An issuer has either static ``keys`` or ``"resolve": "did:web"`` (keys fetched from its DID
document). Static keys are built into key objects once, here; a bad entry stops the service at
start with a message naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from yarl import URL

from mandate_vault_verifier.didweb import InvalidDid, did_web_url
from mandate_vault_verifier.keys import InvalidKey, TrustedKey, build_key

Algorithm = Literal["RS256", "PS256", "ES256", "ES384", "EdDSA"]
MAX_KEYS_PER_ISSUER = 64


class TruststoreError(ValueError):
    """The truststore cannot be loaded; the message says where and why."""


class _IssuerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^did:[a-z0-9]+:\S+$", max_length=2048)
    algorithms: list[Algorithm] = Field(min_length=1)
    keys: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_KEYS_PER_ISSUER)
    resolve: Literal["did:web"] | None = None

    @model_validator(mode="after")
    def _keys_or_resolve(self) -> Self:
        if bool(self.keys) == (self.resolve is not None):
            msg = "give either static keys or resolve: did:web"
            raise ValueError(msg)
        return self


class _TruststoreFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuers: list[_IssuerEntry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Issuer:
    id: str
    algorithms: frozenset[str]
    keys: Mapping[str, TrustedKey] = field(default_factory=dict)
    did_web_url: URL | None = None

    @property
    def resolvable(self) -> bool:
        return self.did_web_url is not None


@dataclass(frozen=True, slots=True)
class Truststore:
    issuers: Mapping[str, Issuer]

    def get(self, issuer_id: str) -> Issuer | None:
        return self.issuers.get(issuer_id)

    @property
    def static_key_count(self) -> int:
        return sum(len(issuer.keys) for issuer in self.issuers.values())


def load_truststore(path: Path | None = None, inline: str | None = None) -> Truststore:
    """Read, validate and build the truststore; an empty one when neither source is set."""
    if path is not None:
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"truststore {path}: {exc.strerror or exc}"
            raise TruststoreError(msg) from None
        return parse_truststore(raw, source=str(path))
    if inline is not None:
        return parse_truststore(inline, source="VERIFIER_TRUSTSTORE_JSON")
    return Truststore(issuers={})


def parse_truststore(raw: str | bytes, source: str = "truststore") -> Truststore:
    try:
        parsed = _TruststoreFile.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
            for err in exc.errors()
        )
        msg = f"{source}: {problems}"
        raise TruststoreError(msg) from None
    issuers: dict[str, Issuer] = {}
    for index, entry in enumerate(parsed.issuers):
        if entry.id in issuers:
            msg = f"{source}: issuers.{index}: duplicate issuer {entry.id!r}"
            raise TruststoreError(msg)
        try:
            issuers[entry.id] = _build_issuer(entry)
        except (InvalidKey, InvalidDid) as exc:
            msg = f"{source}: issuers.{index} ({entry.id}): {exc}"
            raise TruststoreError(msg) from None
    return Truststore(issuers=issuers)


def _build_issuer(entry: _IssuerEntry) -> Issuer:
    algorithms = frozenset(entry.algorithms)
    if entry.resolve == "did:web":
        return Issuer(id=entry.id, algorithms=algorithms, did_web_url=did_web_url(entry.id))
    keys: dict[str, TrustedKey] = {}
    for jwk in entry.keys:
        key = build_key(jwk, algorithms)
        if key.kid in keys:
            msg = f"duplicate kid {key.kid!r}"
            raise InvalidKey(msg)
        keys[key.kid] = key
    return Issuer(id=entry.id, algorithms=algorithms, keys=keys)
