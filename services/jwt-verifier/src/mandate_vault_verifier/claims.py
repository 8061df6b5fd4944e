"""The mandate credential carried in the JWT payload, validated after the signature.

Required: ``iss``, ``sub``, ``iat``, ``exp`` (NumericDate), ``vc`` with ``type`` containing
``VerifiableCredential`` and ``PaymentMandate`` and ``credentialSubject`` with ``id`` (= ``sub``),
``scope`` (1..200 characters), ``amountLimit`` (decimal string like ``"100.00"`` or a JSON
number; > 0, at most 2 decimals) and ``currency`` (ISO 4217 form, three uppercase letters).
Optional: ``nbf``, ``jti``. Any absent required field, in the payload or inside ``vc``, is
MISSING_REQUIRED_FIELD; a field present with a bad type or value is CLAIMS_INVALID.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from mandate_vault_verifier.errors import Rejection
from mandate_vault_verifier.statuses import VerificationStatus

REQUIRED_TYPES: Final = frozenset({"VerifiableCredential", "PaymentMandate"})
MAX_AMOUNT: Final = Decimal("1e15")
_AMOUNT_TEXT: Final = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,2})?")
_LATEST_NUMERIC_DATE: Final = 253402300799  # 9999-12-31T23:59:59Z
_CENT: Final = Decimal("0.01")


def _numeric_date(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = "must be a NumericDate (a JSON number of seconds)"
        raise ValueError(msg)
    if not math.isfinite(value) or not 0 <= value <= _LATEST_NUMERIC_DATE:
        msg = "must be a NumericDate between 1970 and 9999"
        raise ValueError(msg)
    return float(value)


def _amount(value: Any) -> Decimal:
    if isinstance(value, str) and _AMOUNT_TEXT.fullmatch(value):
        amount = Decimal(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            amount = Decimal(repr(value))
        except InvalidOperation:
            amount = Decimal("NaN")
    else:
        msg = 'must be a decimal string like "100.00" or a number, with at most 2 decimals'
        raise ValueError(msg)
    if not amount.is_finite() or not 0 < amount < MAX_AMOUNT:
        msg = "must be greater than 0 and less than 10^15"
        raise ValueError(msg)
    if amount.quantize(_CENT) != amount:
        msg = "must have at most 2 decimals"
        raise ValueError(msg)
    return amount


NumericDate = Annotated[float, BeforeValidator(_numeric_date)]
NonBlank = Annotated[str, StringConstraints(strict=True, min_length=1, pattern=r"\S")]
# Issuer and subject identifiers are stored and indexed by the api: 512 characters at most.
MAX_IDENTIFIER_LENGTH = 512
Identifier = Annotated[NonBlank, StringConstraints(max_length=MAX_IDENTIFIER_LENGTH)]


class CredentialSubject(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: Identifier
    scope: Annotated[NonBlank, StringConstraints(max_length=200)]
    amount_limit: Annotated[Decimal, BeforeValidator(_amount)] = Field(alias="amountLimit")
    currency: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]


class Credential(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: list[Annotated[str, StringConstraints(strict=True)]]
    credential_subject: CredentialSubject = Field(alias="credentialSubject")

    @model_validator(mode="after")
    def _is_payment_mandate(self) -> Self:
        if not set(self.type) >= REQUIRED_TYPES:
            msg = "type must contain VerifiableCredential and PaymentMandate"
            raise ValueError(msg)
        return self


class MandateClaims(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    iss: Identifier
    sub: Identifier
    iat: NumericDate
    exp: NumericDate
    nbf: NumericDate | None = None
    jti: Annotated[str, StringConstraints(strict=True)] | None = None
    vc: Credential

    @model_validator(mode="after")
    def _subject_matches(self) -> Self:
        if self.vc.credential_subject.id != self.sub:
            msg = "vc.credentialSubject.id must equal sub"
            raise ValueError(msg)
        return self


@dataclass(frozen=True, slots=True)
class Mandate:
    scope: str
    amount_limit: Decimal
    currency: str
    expires_at: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "scope": self.scope,
            "amount_limit": str(self.amount_limit.quantize(_CENT)),
            "currency": self.currency,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
        }


def validate_claims(payload: dict[str, Any]) -> MandateClaims:
    """The payload as `MandateClaims`; raises `Rejection` naming the fields at fault."""
    try:
        return MandateClaims.model_validate(payload)
    except ValidationError as exc:
        raise _rejection(exc) from None


def mandate_of(claims: MandateClaims) -> Mandate:
    subject = claims.vc.credential_subject
    return Mandate(
        scope=subject.scope,
        amount_limit=subject.amount_limit,
        currency=subject.currency,
        expires_at=datetime.fromtimestamp(claims.exp, tz=UTC),
    )


def _rejection(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_input=False, include_url=False)
    missing = [_path(e["loc"]) for e in errors if e["type"] == "missing"]
    if missing:
        return Rejection(
            VerificationStatus.MISSING_REQUIRED_FIELD,
            f"Missing required claim(s): {', '.join(sorted(set(missing)))}.",
        )
    first = errors[0]
    where = _path(first["loc"]) or "payload"
    return Rejection(VerificationStatus.CLAIMS_INVALID, f"Invalid claim {where}: {first['msg']}.")


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)
