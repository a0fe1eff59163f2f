"""Dashboard sign-in: an API key, once, becomes a signed session cookie bound to that key.

The cookie holds `<key id>.<key hash prefix>.<expires>.<signature>`: it never holds the key itself, and
every request reloads the key, so revoking it ends the session at once. The CSRF token of a session is
an HMAC of its cookie, sent back in a form field or the `X-CSRF-Token` header of htmx requests.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass

from app.core.security import secret_key
from app.models import ApiKey

COOKIE = "trainyard_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
PREFIX = "ws1"


def _sign(purpose: str, message: str) -> str:
    digest = hmac.new(secret_key(), f"trainyard-{purpose}:{message}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _binding(key: ApiKey) -> str:
    # A few characters of the key's hash: a cookie for a key id is void for any other key with that id.
    return key.key_hash[:16]


def issue(key: ApiKey, expires: int) -> str:
    """The cookie value of a new session of `key`, valid until `expires` (unix seconds)."""
    message = f"{PREFIX}.{key.id}.{_binding(key)}.{expires}"
    return f"{message}.{_sign('session', message)}"


@dataclass(frozen=True)
class SessionClaim:
    key_id: int
    binding: str
    expires: int


def read(cookie: str, now: float) -> SessionClaim | None:
    """What a cookie claims, or None when it is forged, malformed or expired."""
    parts = cookie.split(".")
    if len(parts) != 5 or parts[0] != PREFIX or not parts[1].isdigit() or not parts[3].isdigit():
        return None
    message, signature = ".".join(parts[:4]), parts[4]
    if not hmac.compare_digest(_sign("session", message), signature) or int(parts[3]) <= now:
        return None
    return SessionClaim(int(parts[1]), parts[2], int(parts[3]))


def matches(claim: SessionClaim, key: ApiKey) -> bool:
    return hmac.compare_digest(claim.binding, _binding(key))


def csrf_token(cookie: str) -> str:
    return _sign("csrf", cookie)


def csrf_ok(cookie: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(csrf_token(cookie), token)
