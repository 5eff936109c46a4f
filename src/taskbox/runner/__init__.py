"""The asyncio runner shell around ``protocol.runner.RunnerProtocol``.

``lifecycle`` (the process: health, signals, sandbox start-up, connecting),
``session`` (one connection and its TaskGroup), ``connection`` (the websocket pump and
the one send choke point), ``offer_loop``, ``rpc_router`` (runner -> broker requests),
``execution`` (one task from settings to result), ``shutdown`` (every way to stop).
"""

from __future__ import annotations

from taskbox.runner.lifecycle import EXIT_AUTH, EXIT_ERROR, EXIT_OK, Runner

__all__ = ["EXIT_AUTH", "EXIT_ERROR", "EXIT_OK", "Runner"]
