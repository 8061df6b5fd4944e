"""The mandate credential schema, checked after a real signature verified."""

from __future__ import annotations

from typing import Any

import pytest

from mandate_vault_harness.jose import (
    ALICE,
    Keys,
    VerifierFactory,
    mandate_claims,
    sign,
    static_issuer,
)
from mandate_vault_verifier.statuses import VerificationStatus as S
from mandate_vault_verifier.verifier import Verifier

BANK = "did:web:bank.example.com"


@pytest.fixture
async def verifier(make_verifier: VerifierFactory, keys: Keys) -> Verifier:
    return make_verifier([static_issuer(BANK, [keys.ec, keys.ed], ["ES256", "EdDSA"])])


def with_subject(**fields: Any) -> dict[str, Any]:
    claims = mandate_claims(BANK)
    subject = claims["vc"]["credentialSubject"]
    for name, value in fields.items():
        if value is ...:
            del subject[name]
        else:
            subject[name] = value
    return claims


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("100.00", "100.00"), ("0.01", "0.01"), ("5", "5.00"), ("12.5", "12.50"), (250, "250.00"),
     (99.99, "99.99"), (0.1, "0.10"), ("999999999999999.99", "999999999999999.99")],
)  # fmt: skip
async def test_amount_limits_are_normalised_to_two_decimals(
    verifier: Verifier, keys: Keys, amount: Any, expected: str
) -> None:
    result = await verifier.verify(sign(keys.ec, with_subject(amountLimit=amount)))
    assert result.status is S.VALID, result.reason
    assert result.mandate is not None
    mandate = result.mandate.to_json()
    assert mandate["amount_limit"] == expected
    assert mandate["scope"] == "payments:recurring"
    assert mandate["currency"] == "EUR"
    assert mandate["expires_at"].endswith("Z")


@pytest.mark.parametrize(
    "fields",
    [
        {"amountLimit": "10.001"}, {"amountLimit": "0"}, {"amountLimit": "0.00"},
        {"amountLimit": "-5.00"}, {"amountLimit": 0}, {"amountLimit": -1},
        {"amountLimit": 10.001}, {"amountLimit": "1e3"}, {"amountLimit": "1,000.00"},
        {"amountLimit": " 10.00"}, {"amountLimit": True}, {"amountLimit": None},
        {"amountLimit": "NaN"}, {"amountLimit": "Infinity"}, {"amountLimit": 1e300},
        {"amountLimit": "1000000000000000.00"}, {"amountLimit": ["10.00"]},
        {"currency": "eur"}, {"currency": "EURO"}, {"currency": "E1R"}, {"currency": 978},
        {"currency": ""},
        {"scope": ""}, {"scope": "   "}, {"scope": "s" * 201}, {"scope": 7},
        {"id": "did:example:mallory"},
    ],
)  # fmt: skip
async def test_bad_credential_subjects_are_claims_invalid(
    verifier: Verifier, keys: Keys, fields: dict[str, Any]
) -> None:
    result = await verifier.verify(sign(keys.ec, with_subject(**fields)))
    assert result.status is S.CLAIMS_INVALID, result.reason
    assert (result.claims, result.mandate) == (None, None)
    assert result.issuer == BANK  # reported, labelled untrusted by the status


async def test_the_longest_scope_is_accepted(verifier: Verifier, keys: Keys) -> None:
    result = await verifier.verify(sign(keys.ed, with_subject(scope="s" * 200)))
    assert result.status is S.VALID


@pytest.mark.parametrize(("length", "expected"), [(512, S.VALID), (513, S.CLAIMS_INVALID)])
async def test_subjects_longer_than_the_api_stores_are_claims_invalid(
    verifier: Verifier, keys: Keys, length: int, expected: S
) -> None:
    subject = "did:example:" + "s" * (length - len("did:example:"))
    claims = with_subject(id=subject)
    claims["sub"] = subject
    result = await verifier.verify(sign(keys.ec, claims))
    assert result.status is expected, result.reason


@pytest.mark.parametrize("name", ["scope", "amountLimit", "currency", "id"])
async def test_a_missing_credential_subject_field_is_missing_required_field(
    verifier: Verifier, keys: Keys, name: str
) -> None:
    result = await verifier.verify(sign(keys.ec, with_subject(**{name: ...})))
    assert result.status is S.MISSING_REQUIRED_FIELD
    assert name in (result.reason or "")


@pytest.mark.parametrize("name", ["sub", "iat", "exp", "vc"])
async def test_a_missing_required_claim_is_missing_required_field(
    verifier: Verifier, keys: Keys, name: str
) -> None:
    claims = mandate_claims(BANK)
    del claims[name]
    result = await verifier.verify(sign(keys.ed, claims))
    assert result.status is S.MISSING_REQUIRED_FIELD
    assert name in (result.reason or "")
    assert result.claims is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": "tomorrow"}, {"iat": True}, {"exp": None}, {"nbf": "now"}, {"exp": -1},
        {"exp": 1e20}, {"jti": 12}, {"sub": 42}, {"sub": ""},
        {"vc": "a credential"}, {"vc": {"type": "PaymentMandate", "credentialSubject": {}}},
    ],
)  # fmt: skip
async def test_claims_of_the_wrong_type_are_claims_invalid(
    verifier: Verifier, keys: Keys, overrides: dict[str, Any]
) -> None:
    claims = mandate_claims(BANK)
    claims.update(overrides)
    result = await verifier.verify(sign(keys.ec, claims))
    assert result.status in {S.CLAIMS_INVALID, S.MISSING_REQUIRED_FIELD}, result.reason
    if "vc" not in overrides:
        assert result.status is S.CLAIMS_INVALID


@pytest.mark.parametrize(
    "types",
    [
        ["VerifiableCredential"],
        ["PaymentMandate"],
        [],
        ["VerifiableCredential", 3],
        "PaymentMandate",
    ],
)
async def test_the_credential_type_must_name_both_types(
    verifier: Verifier, keys: Keys, types: Any
) -> None:
    claims = mandate_claims(BANK)
    claims["vc"]["type"] = types
    result = await verifier.verify(sign(keys.ec, claims))
    assert result.status is S.CLAIMS_INVALID


async def test_extra_claims_and_types_are_kept(verifier: Verifier, keys: Keys) -> None:
    claims = mandate_claims(BANK, purpose="rent")
    claims["vc"]["type"].append("BankMandate")
    result = await verifier.verify(sign(keys.ec, claims))
    assert result.status is S.VALID
    assert result.claims is not None
    assert result.claims["purpose"] == "rent"
    assert result.subject == ALICE
