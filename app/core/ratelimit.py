"""Per-key rate limits in Redis: a fixed window per key (`INCR` + `EXPIRE`), shared by every API process.

When Redis cannot be reached the request goes through: the limit protects the queue from a runaway
script, and refusing every submission while Redis is down would not help anyone.
"""

import logging
import math
import re
import time

from redis.exceptions import RedisError

from app.core.errors import AppError, ErrorCode
from app.core.redis import get_redis

log = logging.getLogger("app.backend")
RATE_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*s?\s*$")


def parse_rate(text: str) -> tuple[int, int]:
    """`30/60s` -> (30, 60): at most 30 in any 60-second window."""
    match = RATE_PATTERN.match(text)
    if match is None or int(match.group(2)) == 0:
        raise ValueError(f"a rate is '<count>/<seconds>s', got {text!r}")
    return int(match.group(1)), int(match.group(2))


def check_rate(scope: str, who: str, rate: str, now: float | None = None) -> None:
    """Count one call of `who` in `scope`; 429 with Retry-After when the window is full."""
    limit, window = parse_rate(rate)
    now = time.time() if now is None else now
    start = int(now // window) * window
    key = f"trainyard:rate:{scope}:{who}:{start}"
    try:
        pipe = get_redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count = int(pipe.execute()[0])
    except RedisError:
        log.warning("rate limit %s not checked: Redis unavailable", scope, exc_info=True)
        return
    if count > limit:
        retry_after = max(1, math.ceil(start + window - now))
        raise AppError(
            429,
            ErrorCode.RATE_LIMITED,
            f"at most {limit} {scope} requests per {window} s for this API key; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
