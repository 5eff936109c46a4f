"""Reconnect policy as data: a backoff generator and a retryability check.

Grant tokens are single-use (protocol.md §3): a 401/403 can only be fixed by minting a
new grant with N8N_RUNNERS_AUTH_TOKEN; 429, OSError, timeouts and 5xx are retryable.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import orjson

from taskbox.errors import AuthenticationFailed, ConnectionClosed
from taskbox.runner.websocket import is_loopback

__all__ = ["RateLimited", "backoff", "is_retryable", "mint_grant_token"]


class RateLimited(ConnectionClosed):
    """The broker answered 429; wait ``retry_after`` seconds if it said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def backoff(initial: float = 0.2, factor: float = 2.0, cap: float = 30.0,
            rng: random.Random | None = None) -> Iterator[float]:
    """Exponential delays with full jitter, capped (websockets' client does the same)."""
    rng = rng or random.Random()
    delay = initial
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(delay * factor, cap)


def is_retryable(exc: BaseException) -> bool:
    """True for transient failures; auth failures are never retried with the same token."""
    if isinstance(exc, AuthenticationFailed):
        return False
    return isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError, ConnectionClosed))


def _post_auth(url: str, auth_token: str, timeout: float) -> str:
    # Imported here: only a runner holding the auth token needs it (cold start, §14.4).
    import urllib.error
    import urllib.request

    body = orjson.dumps({"token": auth_token})
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    direct = urllib.request.ProxyHandler({}) if is_loopback(url) else urllib.request.ProxyHandler()
    try:
        with urllib.request.build_opener(direct).open(request, timeout=timeout) as response:
            data = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise AuthenticationFailed(
                f"the broker refused N8N_RUNNERS_AUTH_TOKEN at /runners/auth (HTTP {exc.code})"
            ) from exc
        if exc.code == 429:
            retry = exc.headers.get("Retry-After")
            raise RateLimited("rate-limited at /runners/auth (HTTP 429)",
                              float(retry) if retry and retry.isdigit() else None) from exc
        raise ConnectionClosed(f"/runners/auth answered HTTP {exc.code}") from exc
    except orjson.JSONDecodeError as exc:
        raise ConnectionClosed("/runners/auth answered with invalid JSON") from exc
    token = data.get("data", {}).get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise ConnectionClosed("/runners/auth answered without data.token")
    return token


async def mint_grant_token(host_port: str, auth_token: str, timeout: float = 10.0) -> str:
    """POST /runners/auth for a fresh single-use grant token (off the event loop)."""
    url = f"http://{host_port}/runners/auth"
    return await asyncio.to_thread(_post_auth, url, auth_token, timeout)
