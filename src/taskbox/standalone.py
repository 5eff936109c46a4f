"""Running Code-node tasks without n8n: an embedded broker and a real runner in-process.

``taskbox run`` (one task) and ``taskbox serve`` (the HTTP API) both use ``LocalRunner``.
The broker listens on a free loopback port; the user code still runs only in a sandbox
worker. The runner gets a grant token minted by the broker, and the auth token so it
could reconnect, exactly as under n8n. Results are then checked as n8n's Code node
checks them (``taskbox.items``), so a local pass is an n8n pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from taskbox.broker import EmbeddedBroker, RequestOutcome
from taskbox.config import Config
from taskbox.items import ItemsRejected, check_result
from taskbox.runner.lifecycle import Runner

__all__ = ["Failure", "LocalRunner", "Outcome", "failure_kind", "print_line", "run_snippet"]

Failure = Literal["error", "timeout", "memory"]

#: How the runner words the limits it enforces (executor/supervisor.py, the broker).
_TIMEOUT_PREFIXES = ("Task execution timed out", "Task exceeded the CPU time limit",
                     "Task request timed out")
_MEMORY_PREFIXES = ("Task exceeded the memory limit",)


def failure_kind(error: Any) -> Failure:
    """Which limit (if any) a task error is: the wire error has no kind, its text does."""
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    if message.startswith(_TIMEOUT_PREFIXES):
        return "timeout"
    if message.startswith(_MEMORY_PREFIXES):
        return "memory"
    return "error"


def print_line(params: list[Any]) -> str:
    """One ``print`` call as text: n8n quotes strings for its console, a terminal does not."""
    def unquote(param: Any) -> str:
        text = str(param)
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else text
    return " ".join(unquote(p) for p in params)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished local task, after n8n's result checks.

    Attributes:
        items: the output items as n8n would pass them on (None on failure).
        error: n8n's error object (message, description, lineNumber...) on failure.
        kind: on failure, which: ``error``, ``timeout`` or ``memory``.
        prints: one list of formatted arguments per ``print`` call.
        warning: with continue-on-fail, the check n8n would have failed silently.
        accept_to_done: seconds from the runner's accept to its taskdone/taskerror.
    """

    items: list[dict[str, Any]] | None
    error: dict[str, Any] | None = None
    kind: Failure = "error"
    prints: list[list[Any]] = field(default_factory=list)
    warning: dict[str, Any] | None = None
    accept_to_done: float | None = None
    submit_to_accept: float | None = None
    #: ``customData`` / ``staticData`` from taskdone: what n8n would save (issue 14).
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def settle(raw: RequestOutcome, settings: dict[str, Any]) -> Outcome:
    """Apply n8n's Code-node checks to the broker's outcome."""
    outcome = _check(raw, settings)
    if raw.data:
        extras: dict[str, Any] = {k: v for k, v in raw.data.items()
                                  if k in ("customData", "staticData")}
        outcome = replace(outcome, extras=extras)
    if raw.accepted_at is None:
        return outcome
    return replace(outcome, accept_to_done=raw.done_at - raw.accepted_at,
                   submit_to_accept=raw.accepted_at - raw.submitted_at)


def _check(raw: RequestOutcome, settings: dict[str, Any]) -> Outcome:
    if not raw.ok:
        error = raw.error if isinstance(raw.error, dict) else {"message": str(raw.error)}
        return Outcome(None, error, failure_kind(error), raw.prints)
    mode: Literal["all", "each"] = ("each" if settings.get("nodeMode") == "runOnceForEachItem"
                                    else "all")
    try:
        return Outcome(check_result(raw.result, mode), prints=raw.prints)
    except ItemsRejected as exc:
        if settings.get("continueOnFail"):
            # n8n passes the input items through and the message is lost
            # (protocol.md §9.4); keep it as a warning.
            return Outcome(list(settings.get("items") or []), prints=raw.prints,
                           warning=exc.error)
        return Outcome(None, exc.error, "error", raw.prints)


class LocalRunner:
    """An embedded broker with one runner of ``max_concurrency`` slots, on loopback."""

    def __init__(self, config: Config, max_concurrency: int = 1) -> None:
        self.config = config
        self.max_concurrency = max_concurrency
        self._auth_token = secrets.token_hex(16)
        self.broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=self._auth_token,
                                     task_timeout=config.limits.task_timeout + 5.0,
                                     max_payload=config.max_payload)
        self.runner: Runner | None = None
        self._serving: asyncio.Task[int] | None = None

    async def start(self) -> None:
        """Start both and wait until the runner has registered.

        Raises:
            RuntimeError: the runner exited during start-up.
        """
        await self.broker.start()
        self.runner = Runner(self.config.with_overrides(
            broker_uri=self.broker.uri, grant_token=self.broker.mint_grant_token(),
            auth_token=self._auth_token, max_concurrency=self.max_concurrency),
            handle_signals=False)
        self._serving = asyncio.create_task(self.runner.run())
        ready = asyncio.create_task(self.broker.wait_for_runners(1, timeout=30.0))
        done, _ = await asyncio.wait({ready, self._serving},
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._serving in done:
            ready.cancel()
            raise RuntimeError("the runner exited during start-up "
                               f"(code {self._serving.result()})")
        await ready

    async def submit(self, settings: dict[str, Any],
                     on_print: Callable[[list[Any]], None] | None = None,
                     context: dict[str, Any] | None = None) -> Outcome:
        """Run one task; ``context`` (broker/workflow_data.py) answers its data requests."""
        raw = await self.broker.submit(settings, timeout=self.config.limits.task_timeout + 10.0,
                                       on_print=on_print, context=context)
        return settle(raw, settings)

    async def aclose(self) -> None:
        if self.runner is not None:
            self.runner.request_stop()
        if self._serving is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._serving, 15.0)
        await self.broker.aclose()


async def run_snippet(config: Config, settings: dict[str, Any],
                      on_print: Callable[[list[Any]], None] | None = None,
                      context: dict[str, Any] | None = None) -> Outcome:
    """Execute one Code-node task and return its checked outcome."""
    local = LocalRunner(config)
    try:
        await local.start()
        return await local.submit(settings, on_print, context)
    finally:
        await local.aclose()
