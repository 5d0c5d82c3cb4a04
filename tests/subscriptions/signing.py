"""Test keys and signatures for webhooks: what a Durable Streams server does to sign (§7)."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

JWKS_URL = "https://streams.example.com/v1/stream/__ds/jwks.json"
TOKEN = "eyJzdWIiOiJzdWJzY3JpcHRpb246b3JkZXJzIn0.c2VjcmV0LXRva2VuLXNpZ25hdHVyZQ"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: Ed25519PrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw),
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
        **extra,
    }


def jwks(*keys: tuple[Ed25519PrivateKey, str]) -> bytes:
    return json.dumps({"keys": [public_jwk(key, kid) for key, kid in keys]}).encode()


def signature_header(key: Ed25519PrivateKey, kid: str, t: int | str, body: bytes) -> str:
    signature = key.sign(str(t).encode() + b"." + body)
    return f"t={t},kid={kid},ed25519={b64url(signature)}"


def notification_body(subscription_id: str = "orders", **changes: Any) -> bytes:
    document: dict[str, Any] = {
        "subscription_id": subscription_id,
        "wake_id": "w_0123456789abcdef01234567",
        "generation": 3,
        "streams": [
            {
                "path": "orders/eu",
                "link_type": "explicit",
                "acked_offset": "0000000000000000_0000000000000005",
                "tail_offset": "0000000000000000_0000000000000009",
                "has_pending": True,
            }
        ],
        "callback_url": "https://streams.example.com/v1/stream/__ds/subscriptions/orders/callback",
        "callback_token": TOKEN,
        **changes,
    }
    return json.dumps(document).encode()
