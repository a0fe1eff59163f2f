"""Per-attempt callback tokens for trainers.

A token is an HMAC of (job id, attempt) under the server secret, so the worker can hand the raw token
to its trainer without the database ever holding it; the job row keeps only its sha256. The attempt
is written in the token in clear, which lets the API tell a stale attempt (409) from a forged token (401).
"""

import base64
import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from app.core.inputs import parse_decimal
from app.core.settings import Settings, get_settings

PREFIX = "ty1"
DEV_KEY_FILE = "secret_key"


class MissingSecretKey(RuntimeError):
    pass


def secret_key(settings: Settings | None = None) -> bytes:
    """TRAINYARD_SECRET_KEY; in dev only, a random key kept in the data dir (shared by API and workers)."""
    settings = settings or get_settings()
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode()
    if settings.env != "dev":
        raise MissingSecretKey("TRAINYARD_SECRET_KEY must be set when TRAINYARD_ENV is not 'dev'")
    return _dev_key(settings.resolved_data_dir / DEV_KEY_FILE)


@lru_cache
def _dev_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    # Another process may have created it a moment ago; wait for its content.
    for _ in range(100):
        key = path.read_text().strip()
        if key:
            return key.encode()
        os.sched_yield()
    raise MissingSecretKey(f"{path} is empty")


def _signature(key: bytes, job_id: int, attempt: int) -> str:
    digest = hmac.new(key, f"trainyard-callback:{job_id}:{attempt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def job_token(job_id: int, attempt: int, settings: Settings | None = None) -> str:
    """The callback token of one attempt of a job."""
    return f"{PREFIX}.{attempt}.{_signature(secret_key(settings), job_id, attempt)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_attempt(job_id: int, token: str, settings: Settings | None = None) -> int | None:
    """The attempt a token was issued for, or None when it was not issued for this job by this server."""
    prefix, _, rest = token.partition(".")
    attempt_text, _, signature = rest.partition(".")
    attempt = parse_decimal(attempt_text, max_digits=9)
    if prefix != PREFIX or attempt is None:
        return None
    expected = _signature(secret_key(settings), job_id, attempt)
    return attempt if _same(expected, signature) else None


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison of a signature with what a caller sent (which may be any text:
    `hmac.compare_digest` refuses non-ASCII str, so compare bytes)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


# Stream tokens: what a browser's EventSource (which cannot set headers) passes as `?token=` to follow
# one job's events. Bound to the job and to the API key that asked for it (a revoked key's tokens stop
# working), and short-lived; an open stream is not cut when its token expires.
STREAM_PREFIX = "ys1"


def _stream_signature(key: bytes, job_id: int, key_id: int, expires: int) -> str:
    message = f"trainyard-stream:{job_id}:{key_id}:{expires}".encode()
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=").decode()


def stream_token(job_id: int, key_id: int, expires: int, settings: Settings | None = None) -> str:
    """A token for the events of `job_id`, on behalf of API key `key_id`, valid until `expires` (unix)."""
    signature = _stream_signature(secret_key(settings), job_id, key_id, expires)
    return f"{STREAM_PREFIX}.{job_id}.{key_id}.{expires}.{signature}"


def stream_token_key(job_id: int, token: str, now: float, settings: Settings | None = None) -> int | None:
    """The API key id a stream token speaks for; None when it is forged, expired or for another job."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != STREAM_PREFIX:
        return None
    token_job, key_id, expires = (parse_decimal(p) for p in parts[1:4])
    if token_job is None or key_id is None or expires is None:
        return None
    expected = _stream_signature(secret_key(settings), token_job, key_id, expires)
    if not _same(expected, parts[4]) or token_job != job_id or expires <= now:
        return None
    return key_id
