"""Admission to the broker: single-use grant tokens with a TTL, and rate limits.

A grant token is what ``POST /runners/auth`` hands out in exchange for the auth token,
and what ``GET /runners/_ws`` consumes from ``Authorization: Bearer``. Like n8n's: 32
random bytes as 64 hex characters, valid for ``ttl`` seconds (``N8N_RUNNERS_GRANT_TOKEN_TTL``,
default 30), usable exactly once.

``RateLimiter`` caps requests per client on ``/runners/auth`` and on upgrades, as
n8n's express-rate-limit does (5/s).

Owns no I/O; the clock is injectable so tests can expire tokens without sleeping.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

__all__ = ["DEFAULT_GRANT_TTL", "GrantStore", "RateLimiter"]

DEFAULT_GRANT_TTL = 30.0


class GrantStore:
    """Mints and consumes grant tokens.

    Args:
        ttl: seconds a token stays valid after minting.
        clock: monotonic seconds; ``time.monotonic`` unless a test injects one.
    """

    def __init__(self, ttl: float = DEFAULT_GRANT_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError("grant token TTL must be greater than 0")
        self.ttl = ttl
        self._clock = clock
        self._tokens: dict[str, float] = {}  # token -> expiry

    def __len__(self) -> int:
        return len(self._tokens)

    def mint(self) -> str:
        """Create a new token.

        Returns:
            64 lowercase hex characters.
        """
        now = self._clock()
        self._purge(now)
        token = secrets.token_hex(32)
        self._tokens[token] = now + self.ttl
        return token

    def consume(self, token: str) -> bool:
        """Use up ``token``.

        Returns:
            True exactly once for a minted, unexpired token; False for unknown, used or
            expired tokens (the broker answers 403 to all three).
        """
        expiry = self._tokens.pop(token, None)
        if expiry is None:
            return False
        return self._clock() <= expiry

    def _purge(self, now: float) -> None:
        for token in [t for t, expiry in self._tokens.items() if expiry < now]:
            del self._tokens[token]


class RateLimiter:
    """At most ``limit`` requests per client per 1 s window (n8n: express-rate-limit, 5/s)."""

    def __init__(self, limit: float | None, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, key: str) -> bool:
        if self.limit is None or self.limit <= 0:
            return True
        now = self._clock()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= 1.0:
            start, count = now, 0
        if count >= self.limit:
            self._windows[key] = (start, count)
            return False
        self._windows[key] = (start, count + 1)
        if len(self._windows) > 10_000:  # forget idle clients
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 1.0}
        return True
