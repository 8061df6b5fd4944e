"""did:web: DID to URL, and DID document to trusted keys (W3C did:web method).

``did:web:example.com`` -> ``https://example.com/.well-known/did.json``;
``did:web:example.com:user:alice`` -> ``https://example.com/user/alice/did.json``;
``%3A`` in the host part encodes a port (``did:web:example.com%3A8443``). HTTPS only, and the
host must be a DNS name: IP literals in any form are refused.

A document is used only if its ``id`` equals the DID. Its keys are the ``verificationMethod``
entries with a ``publicKeyJwk`` whose id is ``<DID>#<fragment>`` (or ``#<fragment>``) and whose
controller, if given, is the DID. A token's ``kid`` may name a method by its full id
(``did:web:example.com#key-1``) or by the fragment alone (``key-1``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final
from urllib.parse import unquote

from yarl import URL

from mandate_vault_shared.ssrf import SsrfBlocked, parse_host_address
from mandate_vault_verifier.keys import InvalidKey, TrustedKey, build_key

DID_WEB_PREFIX: Final = "did:web:"
MAX_VERIFICATION_METHODS: Final = 64
_METHOD_SPECIFIC_ID: Final = re.compile(r"[A-Za-z0-9._%-]+(?::[A-Za-z0-9._%-]+)*")
_HOSTNAME: Final = re.compile(
    r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*"
)
_PORT_ESCAPE: Final = re.compile(r"%3a", re.IGNORECASE)
_PATH_SEGMENT: Final = re.compile(r"[A-Za-z0-9._~-]+")
_FRAGMENT: Final = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/?-]+")


class InvalidDid(ValueError):
    """Not a did:web identifier this service can resolve."""


class InvalidDidDocument(ValueError):
    """A fetched DID document that cannot be used."""


def did_web_url(did: str) -> URL:
    """The HTTPS URL of ``did``'s document; raises `InvalidDid`."""
    if not did.startswith(DID_WEB_PREFIX):
        raise InvalidDid("not a did:web identifier")
    specific = did[len(DID_WEB_PREFIX) :]
    if not _METHOD_SPECIFIC_ID.fullmatch(specific):
        raise InvalidDid("did:web identifier has invalid characters")
    host_part, *segments = specific.split(":")
    host, port = _host_and_port(host_part)
    path = [unquote(segment) for segment in segments]
    if any(not _PATH_SEGMENT.fullmatch(s) or s in {".", ".."} for s in path):
        raise InvalidDid("did:web path segment is not allowed")
    joined = "/".join([*path, "did.json"]) if path else ".well-known/did.json"
    return URL.build(scheme="https", host=host, port=port, path=f"/{joined}", encoded=False)


def _host_and_port(host_part: str) -> tuple[str, int | None]:
    if "%" in _PORT_ESCAPE.sub("", host_part):
        raise InvalidDid("only %3A (a port) may be percent-encoded in the did:web host")
    host, _, port_text = _PORT_ESCAPE.sub(":", host_part).partition(":")
    host = host.lower()
    try:
        is_ip = parse_host_address(host) is not None
    except SsrfBlocked:
        is_ip = True
    if is_ip:
        raise InvalidDid("did:web hosts must be DNS names, not IP addresses")
    if not _HOSTNAME.fullmatch(host):
        raise InvalidDid("did:web host is not a valid DNS name")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidDid("did:web port is not valid")
    return host, int(port_text)


def parse_did_document(did: str, body: bytes, algorithms: frozenset[str]) -> dict[str, TrustedKey]:
    """Keys of the document, by full method id and by fragment; raises `InvalidDidDocument`."""
    document = _load_document(body)
    if document.get("id") != did:
        raise InvalidDidDocument("the DID document's id is not the issuer's DID")
    methods = document.get("verificationMethod")
    if not isinstance(methods, list) or not methods:
        raise InvalidDidDocument("the DID document has no verificationMethod list")
    if len(methods) > MAX_VERIFICATION_METHODS:
        raise InvalidDidDocument("the DID document has too many verification methods")
    keys: dict[str, TrustedKey] = {}
    skipped: list[str] = []
    for method in methods:
        try:
            key = _method_key(did, method, algorithms)
        except InvalidKey as exc:
            skipped.append(str(exc))
            continue
        if key.kid not in keys:
            keys[key.kid] = key
            keys.setdefault(key.kid.split("#", 1)[1], key)
    if not keys:
        detail = f" ({skipped[0]})" if skipped else ""
        raise InvalidDidDocument(f"the DID document has no usable publicKeyJwk{detail}")
    return keys


def _load_document(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidDidDocument("the DID document is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidDidDocument("the DID document is not a JSON object")
    return document


def _method_key(did: str, method: Any, algorithms: frozenset[str]) -> TrustedKey:
    if not isinstance(method, dict):
        raise InvalidKey("a verification method is not an object")
    method_id = method.get("id")
    if isinstance(method_id, str) and method_id.startswith("#"):
        method_id = did + method_id
    if not isinstance(method_id, str) or not method_id.startswith(f"{did}#"):
        raise InvalidKey("a verification method id is not <DID>#<fragment>")
    if not _FRAGMENT.fullmatch(method_id[len(did) + 1 :]):
        raise InvalidKey("a verification method fragment is not valid")
    controller = method.get("controller")
    if controller is not None and controller != did:
        raise InvalidKey(f"method {method_id!r} is controlled by another DID")
    if "publicKeyJwk" not in method:
        raise InvalidKey(f"method {method_id!r} has no publicKeyJwk")
    return build_key(method["publicKeyJwk"], algorithms, kid=method_id)
