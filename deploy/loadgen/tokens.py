"""HS256 bearer tokens (RFC 7519, RFC 7515) for the load generator's
clients, signed with the deployment's JWT_SECRET like `shop token` does."""

import base64
import hashlib
import hmac
import json
import time


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(secret, issuer, audience, subject, scope, ttl_secs=3600):
    """A compact JWS: header.claims.signature."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_secs,
        "scope": scope,
    }
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    mac = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256)
    return signing_input + "." + _b64(mac.digest())


def forged(issuer, audience, subject, scope):
    """A well-formed token MACed with a secret the service does not know:
    the service must answer 401 invalid_token (RFC 6750 §3.1)."""
    return mint("not-the-deployment-secret-" + "x" * 16, issuer, audience, subject, scope)
