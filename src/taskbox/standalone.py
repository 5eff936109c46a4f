"""``taskbox run``: one snippet through the embedded broker and a real runner.

Both live in this process on a free loopback port; the user code still runs only in a
sandbox worker. The runner gets a grant token minted by the broker, and the auth token
so it could reconnect, exactly as under n8n.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from taskbox.broker import EmbeddedBroker, TaskOutcome
from taskbox.config import Config
from taskbox.runner.lifecycle import Runner

__all__ = ["run_snippet"]


async def run_snippet(config: Config, settings: dict[str, Any],
                      context: dict[str, Any] | None = None) -> TaskOutcome:
    """Execute one Code-node task and return the broker's view of the outcome.

    ``context`` (broker/workflow_data.py) answers the task's data requests.
    """
    auth_token = secrets.token_hex(16)
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=auth_token,
                            task_timeout=config.limits.task_timeout + 5.0,
                            max_payload=config.max_payload)
    await broker.start()
    runner = Runner(config.with_overrides(
        broker_uri=broker.uri, grant_token=broker.mint_grant_token(), auth_token=auth_token,
        max_concurrency=1), handle_signals=False)
    serving = asyncio.create_task(runner.run())
    try:
        ready = asyncio.create_task(broker.wait_for_runners(1, timeout=30.0))
        done, _ = await asyncio.wait({ready, serving}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:
            ready.cancel()
            raise RuntimeError(f"the runner exited during start-up (code {serving.result()})")
        await ready
        return await broker.submit(settings, timeout=config.limits.task_timeout + 10.0,
                                   context=context)
    finally:
        runner.request_stop()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(serving, 15.0)
        await broker.aclose()
