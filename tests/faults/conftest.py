"""The integration fixtures (embedded broker, child-process runner) for the fault suite."""

from __future__ import annotations

from tests.integration.conftest import broker, spawn

__all__ = ["broker", "spawn"]
