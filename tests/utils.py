"""Shared test helpers: the scaled time unit.

``MS`` is one millisecond times ``TASKBOX_TESTS_TIMEOUT_FACTOR`` (default 1; set it
higher on a slow or loaded machine). Every wait and liveness bound in the suites is a
multiple of it, as websockets' ``tests/utils.py`` does, so a slow machine scales the
bounds instead of failing them. Nothing is ever synchronised by sleeping: wait for the
event, and use ``MS`` only to bound the wait.
"""

from __future__ import annotations

import os

__all__ = ["MS", "TIMEOUT_FACTOR"]

TIMEOUT_FACTOR = float(os.environ.get("TASKBOX_TESTS_TIMEOUT_FACTOR", "1"))
MS = 0.001 * TIMEOUT_FACTOR
