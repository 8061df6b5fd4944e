"""Strict parsing of a compact JWS before any key is looked up (RFC 7515, RFC 8725).

Everything here runs on untrusted input and decides only from the token itself: segment count
(JWE and nested JWTs refused), canonical unpadded base64url, I-JSON objects (UTF-8 without
lone surrogates, unique member names, integers within +-2^53, finite numbers), an `alg` from
the supported asymmetric set, and no header that tries to choose the key (`jku`, `x5u`, `jwk`,
`x5c`) or demands an extension (`crit`, `b64`). No network, no keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

from mandate_vault_verifier.errors import Rejection
from mandate_vault_verifier.keys import SUPPORTED_ALGORITHMS
from mandate_vault_verifier.statuses import VerificationStatus

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_KEY_CHOOSING_HEADERS: Final = ("jku", "x5u", "jwk", "x5c")
_EXTENSION_HEADERS: Final = ("crit", "b64")
_NESTED_CONTENT_TYPES: Final = frozenset({"JWT", "APPLICATION/JWT"})
_JWE_SEGMENTS: Final = 5
MAX_SAFE_INTEGER: Final = 2**53 - 1  # I-JSON (RFC 7493): numbers every consumer reads alike

_FORMAT = VerificationStatus.INVALID_FORMAT


@dataclass(frozen=True, slots=True)
class ParsedToken:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes  # "<header>.<payload>" exactly as received
    signature: bytes
    alg: str
    kid: str | None


def parse_compact(token: str, max_bytes: int) -> ParsedToken:
    """Parse and screen ``token``; raise `Rejection` for anything not worth a key lookup."""
    if len(token) > max_bytes:
        raise Rejection(VerificationStatus.TOKEN_TOO_LARGE, f"The token exceeds {max_bytes} bytes.")
    if not token.isascii():
        raise Rejection(_FORMAT, "A compact JWS is ASCII only.")
    segments = token.split(".")
    if len(segments) == _JWE_SEGMENTS:
        raise Rejection(_FORMAT, "Encrypted tokens (JWE) are not accepted.")
    if len(segments) != 3:
        raise Rejection(_FORMAT, "A compact JWS has exactly three segments.")
    header = _json_object(_b64decode(segments[0], "header"), "header")
    alg, kid = _screen_header(header)
    payload = _json_object(_b64decode(segments[1], "payload"), "payload")
    signature = _b64decode(segments[2], "signature")
    if not signature:
        raise Rejection(VerificationStatus.SIG_INVALID, "The signature is empty.")
    return ParsedToken(
        header=header,
        payload=payload,
        signing_input=f"{segments[0]}.{segments[1]}".encode("ascii"),
        signature=signature,
        alg=alg,
        kid=kid,
    )


def _b64decode(segment: str, name: str) -> bytes:
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise Rejection(_FORMAT, f"The {name} is not unpadded base64url.")
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Rejection(_FORMAT, f"The {name} is not unpadded base64url.") from exc
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment.encode("ascii"):
        raise Rejection(_FORMAT, f"The {name} is not canonical base64url.")
    return decoded


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        msg = "duplicate member name"
        raise ValueError(msg)
    return result


def _refuse_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _ijson_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        msg = "integer outside the I-JSON range"
        raise ValueError(msg)
    return value


def _ijson_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        msg = "number outside the I-JSON range"
        raise ValueError(msg)
    return value


def _check_unicode(value: Any) -> None:
    """Refuse lone surrogates (only a \\u escape can make one): they are not Unicode text."""
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError, a ValueError
    elif isinstance(value, dict):
        for key, item in value.items():
            key.encode("utf-8")
            _check_unicode(item)
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item)


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    if not raw:
        raise Rejection(_FORMAT, f"The {name} is empty.")
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_int=_ijson_int,
            parse_float=_ijson_float,
        )
        if "\\u" in text:
            _check_unicode(value)
    except (ValueError, RecursionError) as exc:
        reason = f"The {name} is not I-JSON: UTF-8 JSON, unique names, safe numbers."
        raise Rejection(_FORMAT, reason) from exc
    if not isinstance(value, dict):
        raise Rejection(_FORMAT, f"The {name} is not a JSON object.")
    return value


def _refused_alg_reason(alg: str) -> str:
    if alg.strip().lower() == "none":
        return "Unsigned tokens (alg none) are not accepted."
    if alg.upper().startswith("HS"):
        return "Symmetric algorithms (HS*) are not accepted for issuer tokens."
    return f"The algorithm is not supported (supported: {', '.join(sorted(SUPPORTED_ALGORITHMS))})."


def _screen_header(header: dict[str, Any]) -> tuple[str, str | None]:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise Rejection(_FORMAT, "The header has no alg.")
    if alg not in SUPPORTED_ALGORITHMS:
        raise Rejection(VerificationStatus.ALG_NOT_ALLOWED, _refused_alg_reason(alg))
    for name in _KEY_CHOOSING_HEADERS:
        if name in header:
            reason = f"The {name} header is not accepted: keys come from the truststore only."
            raise Rejection(VerificationStatus.HEADER_NOT_ALLOWED, reason)
    for name in _EXTENSION_HEADERS:
        if name in header:
            reason = f"The {name} header is not accepted: no JWS extension is supported."
            raise Rejection(VerificationStatus.HEADER_NOT_ALLOWED, reason)
    if "enc" in header or "zip" in header:
        raise Rejection(_FORMAT, "Encrypted tokens (JWE) are not accepted.")
    cty = header.get("cty")
    if cty is not None and (not isinstance(cty, str) or cty.upper() in _NESTED_CONTENT_TYPES):
        raise Rejection(_FORMAT, "Nested tokens are not accepted.")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Rejection(_FORMAT, "The kid header must be a string.")
    return alg, kid
