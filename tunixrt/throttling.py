"""API rate limits: one counter per client and fixed window, in the shared cache (settings.CACHES)."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, cast

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.http import HttpRequest
from redis.exceptions import RedisError
from rest_framework import exceptions, throttling
from rest_framework.settings import api_settings

logger = logging.getLogger(__name__)

# After the cache fails, requests go unlimited for this long without asking it again, so
# that an outage of Redis costs no request more than one short timeout.
CACHE_RETRY_SECONDS = 5.0
_cache_down_until = 0.0


def client_address(request: HttpRequest) -> str:
    """The caller's address: the connection's, or the one the outermost of NUM_PROXIES proxies saw.

    Only the last NUM_PROXIES entries of X-Forwarded-For were written by proxies we trust; anything
    left of them comes from the client and could be forged to dodge a limit or lock someone else out.
    Used for the API rate limits and the login lockouts (AXES_CLIENT_IP_CALLABLE) alike.
    """
    remote: str = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not settings.NUM_PROXIES or not forwarded:
        return remote
    addresses = [part.strip() for part in forwarded.split(",")]
    return addresses[-min(settings.NUM_PROXIES, len(addresses))] or remote


class FixedWindowRateThrottle(throttling.SimpleRateThrottle):
    """A SimpleRateThrottle counting requests in fixed windows (a minute, an hour...).

    DRF's own keeps the timestamp of every request in the window and reads and rewrites that
    list on each request: at the rates a capture client reaches (tens of thousands a minute),
    hundreds of KB per request. One counter per window costs one cache round trip on Redis.
    A fixed window can let up to twice the rate through around a window's edge; for a safety
    limit that is acceptable. If the cache cannot be reached the request is allowed (and
    logged): an outage of Redis must not take the API down with it.
    """

    window_end = 0.0

    def get_rate(self) -> str | None:
        # DRF reads the rates once, when it is imported; reading them here follows the settings.
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"REST_FRAMEWORK has no DEFAULT_THROTTLE_RATES for scope {self.scope!r}.")
        return cast("str | None", rates[self.scope])  # the stubs say numbers; DRF's rates are strings

    def get_ident(self, request: Any) -> str:
        return client_address(request)

    def allow_request(self, request: Any, view: Any) -> bool:
        key = self.get_cache_key(request, view)
        return key is None or self.allow_key(key)

    def allow_key(self, key: str) -> bool:
        """Count one request for `key` in the current window; whether it is within the rate."""
        global _cache_down_until
        limit, duration = self.parse_rate(self.rate)
        if limit is None or duration is None:
            return True
        window = int(self.timer() // duration)
        self.window_end = float((window + 1) * duration)
        if time.monotonic() < _cache_down_until:
            return True
        try:
            count = _count(f"{key}:{window}", duration, limit)
        except (RedisError, OSError, DatabaseError):
            _cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
            logger.warning("Rate limits off for %ss: the cache is unreachable", CACHE_RETRY_SECONDS, exc_info=True)
            return True
        return count <= limit

    def wait(self) -> float:
        # Whole seconds (the Retry-After header drops any fraction), never 0.
        return max(1, math.ceil(self.window_end - self.timer()))


class UserRateThrottle(FixedWindowRateThrottle):
    """Authenticated API calls, per user (scope `user`, API_THROTTLE_USER)."""

    scope = "user"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return f"throttle:{self.scope}:{request.user.pk}"


class AnonRateThrottle(FixedWindowRateThrottle):
    """Anonymous API calls, per client address (scope `anon`, API_THROTTLE_ANON).

    Not a DEFAULT_THROTTLE_CLASS: DRF checks permissions before throttles, so with every endpoint
    refusing anonymous callers it would never run. Token authentication runs it instead
    (`throttle_anonymous`), for every call that ends up anonymous or presents a wrong token.
    """

    scope = "anon"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return f"throttle:{self.scope}:{self.get_ident(request)}"


class TokenIssueThrottle(UserRateThrottle):
    """Issuing API tokens on the token page, per user (scope `token`, API_THROTTLE_TOKEN)."""

    scope = "token"


def throttle_anonymous(request: Any) -> None:
    """Count an anonymous call (or one with a wrong token) against its address; 429 when over the limit.

    Takes no look at `request.user`: this runs while DRF is still authenticating the request.
    """
    throttle = AnonRateThrottle()
    if throttle.rate is not None and not throttle.allow_key(f"throttle:{throttle.scope}:{client_address(request)}"):
        raise exceptions.Throttled(throttle.wait())


# High limits are counted in batches: a process tells the cache about every `limit // BATCH_DIVISOR`
# requests of a key (and about the first of each window), so a busy client costs a cache round trip
# on one request in that many, not on every one. Each process may run that many requests ahead of
# the shared count: for the user limit (60,000 a minute: batches of 60) a few hundred across all
# workers, under 1 %. Limits under BATCH_DIVISOR a window (anonymous calls, token issues) count
# every request exactly.
BATCH_DIVISOR = 1000
_batch_lock = threading.Lock()
_batched: dict[str, tuple[int, int]] = {}  # full window key -> (count the cache holds, requests not yet told)


def forget_batches() -> None:
    """Drop what this process counted in batches (the cache was cleared: tests)."""
    with _batch_lock:
        _batched.clear()


def _count(key: str, timeout: int, limit: int) -> int:
    """Count one request for `key` (a window's counter); the count to compare with `limit`."""
    cache = caches["default"]
    batch = limit // BATCH_DIVISOR
    if batch <= 1:
        return _increment(cache, key, timeout)
    with _batch_lock:
        known, untold = _batched.get(key, (0, 0))
        untold += 1
        if key in _batched and untold < batch:
            _batched[key] = (known, untold)
            return known + untold
        _batched.pop(key, None)
    total = _increment(cache, key, timeout, by=untold)
    with _batch_lock:
        if len(_batched) > 10_000:  # keys of windows that ended: forget them
            _batched.clear()
        _batched[key] = (total, 0)
    return total


_INCREMENT_SCRIPT = (
    "local n = redis.call('INCRBY', KEYS[1], ARGV[2]) if n == tonumber(ARGV[2]) then"
    " redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
)


_redis_clients: dict[Any, Any] = {}


def _increment(cache: BaseCache, key: str, timeout: int, by: int = 1) -> int:
    """Add `by` to the counter `key` (created at `by`, expiring after `timeout` s); its new value."""
    if isinstance(cache, RedisCache):
        # One round trip, atomic (Django's incr() would check existence first: three; a pipeline
        # object costs redis-py more Python than the round trip).
        full_key = cache.make_and_validate_key(key)
        backend: Any = cache._cache  # Django's RedisCacheClient: its pool, and the client class it uses
        pool = backend._get_connection_pool(write=True)
        client = _redis_clients.get(pool)
        if client is None:
            # Django makes a new client per call (~0.2 ms of redis-py set-up); one per pool will do.
            client = _redis_clients[pool] = backend._client(connection_pool=pool)
        return int(client.eval(_INCREMENT_SCRIPT, 1, full_key, timeout, by))
    if cache.add(key, by, timeout):
        return by
    try:
        return cache.incr(key, by)
    except ValueError:  # expired between add() and incr()
        cache.add(key, by, timeout)
        return by
