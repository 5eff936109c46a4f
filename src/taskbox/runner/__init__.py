"""The asyncio runner: connection, offers, dispatch, RPC routing, health, shutdown."""

from __future__ import annotations

from taskbox.runner.lifecycle import EXIT_AUTH, EXIT_ERROR, EXIT_OK, Runner

__all__ = ["EXIT_AUTH", "EXIT_ERROR", "EXIT_OK", "Runner"]
