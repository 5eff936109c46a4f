"""Shared test helpers: the scaled time unit and the embedded broker the shell suites use.

``MS`` is one millisecond times ``TASKBOX_TESTS_TIMEOUT_FACTOR`` (default 1; set it
higher on a slow or loaded machine). Every wait and liveness bound in the suites is a
multiple of it, as websockets' ``tests/utils.py`` does, so a slow machine scales the
bounds instead of failing them. Nothing is ever synchronised by sleeping: wait for the
event, and use ``MS`` only to bound the wait.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from taskbox.broker import EmbeddedBroker

__all__ = ["MS", "TIMEOUT_FACTOR", "running_broker"]

TIMEOUT_FACTOR = float(os.environ.get("TASKBOX_TESTS_TIMEOUT_FACTOR", "1"))
MS = 0.001 * TIMEOUT_FACTOR


@contextlib.asynccontextmanager
async def running_broker(auth_token: str) -> AsyncIterator[EmbeddedBroker]:
    """An embedded broker on a free loopback port, with the settings the runner suites share."""
    b = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=auth_token, task_timeout=30.0,
                       accept_timeout=2.0, rate_limit=1000.0)
    await b.start()
    try:
        yield b
    finally:
        await b.aclose()
