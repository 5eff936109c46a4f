"""Embedded n8n-compatible task broker: ``/runners/auth``, ``/runners/_ws``, ``/healthz``.

Standalone mode (``serve``, used by the CLI) and the peer the runner's tests, the
benchmarks and the security scorecard talk to (``EmbeddedBroker``).
"""

from __future__ import annotations

from taskbox.broker.grants import GrantStore
from taskbox.broker.server import EmbeddedBroker, RequestOutcome, serve

__all__ = ["EmbeddedBroker", "GrantStore", "RequestOutcome", "serve"]
