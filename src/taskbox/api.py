"""``taskbox serve``: run Code-node snippets over HTTP, without writing a broker client.

In the spirit of snekbox's ``POST /eval``::

    POST /run  {"code": "...", "items": [...], "mode": "all"|"each", "continue_on_fail": false}
    200 {"result": [items as n8n passes them on], "prints": ["line", ...]}
    422 {"error": {"message", "description", "lineNumber", ...}, "kind": "error"|"timeout"|
         "memory", "prints": [...]}
    400 bad request body, 401 missing or wrong bearer token, 413 body over the limit,
    503 every slot busy and the queue full (Retry-After: 1)
    GET /healthz  200 {"status": "ok"} (no token: for probes)

Every task goes through the embedded broker to a real runner (``standalone.LocalRunner``),
so it is sandboxed exactly as under n8n and its result is checked as n8n checks it.
At most ``slots`` tasks run at once (the runner's slots); ``queue`` more may wait.
Listens on loopback unless told otherwise; the bearer token is always required.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import orjson
from aiohttp import web

from taskbox.items import ItemsRejected, check_input
from taskbox.standalone import LocalRunner, Outcome, print_line

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_PORT", "ApiServer"]

log = logging.getLogger("taskbox.api")

DEFAULT_PORT = 5690
DEFAULT_MAX_BODY = 16 * 1024 * 1024
_MODES = {"all": "runOnceForAllItems", "each": "runOnceForEachItem"}


class ApiServer:
    """The HTTP front of one ``LocalRunner``.

    Args:
        local: a started broker + runner pair; its ``max_concurrency`` is the slot count.
        token: the bearer token every ``POST /run`` must present.
        queue: requests that may wait for a slot before new ones get 503.
    """

    def __init__(self, local: LocalRunner, token: str, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, *, max_body: int = DEFAULT_MAX_BODY,
                 queue: int | None = None) -> None:
        if not token:
            raise ValueError("an API token is required")
        self.local = local
        self.host = host
        self.port = port
        self._token = token.encode()
        self._max_body = max_body
        self._slots = asyncio.Semaphore(local.max_concurrency)
        self._admitted = 0  # running + waiting
        self._limit = local.max_concurrency + (4 * local.max_concurrency if queue is None
                                               else queue)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post("/run", self._run)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("HTTP API listening on http://%s:%d (POST /run)", self.host, self.port,
                 extra={"event": "api_listening"})
        return self.port

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _run(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json(401, {"error": {"message": "missing or wrong bearer token"}},
                         headers={"WWW-Authenticate": "Bearer"})
        try:
            body = orjson.loads(await request.read())
            settings = _settings(body)
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": {"message": f"request body over {self._max_body} "
                                                    "bytes"}})
        except (orjson.JSONDecodeError, BadRequest) as exc:
            return _json(400, {"error": {"message": str(exc)}})
        if self._admitted >= self._limit:
            return _json(503, {"error": {"message": "all runner slots are busy and the queue "
                                                    "is full; retry later"}},
                         headers={"Retry-After": "1"})
        self._admitted += 1
        try:
            async with self._slots:
                outcome = await self.local.submit(settings)
        finally:
            self._admitted -= 1
        return _answer(outcome)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  self._token)


class BadRequest(ValueError):
    """A ``POST /run`` body that is not a task; the message says which field."""


def _settings(body: Any) -> dict[str, Any]:
    """Broker task settings from a request body, checked as n8n would check the items."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - {"code", "items", "mode", "continue_on_fail"})
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    code = body.get("code")
    if not isinstance(code, str):
        raise BadRequest("'code' must be a string")
    mode = body.get("mode", "all")
    if mode not in _MODES:
        raise BadRequest("'mode' must be \"all\" or \"each\"")
    continue_on_fail = body.get("continue_on_fail", False)
    if not isinstance(continue_on_fail, bool):
        raise BadRequest("'continue_on_fail' must be true or false")
    try:
        items = check_input(body.get("items", [{"json": {}}]))
    except ItemsRejected as exc:
        raise BadRequest(f"'items': n8n would refuse these items: {exc}") from exc
    return {"code": code, "nodeMode": _MODES[mode], "continueOnFail": continue_on_fail,
            "items": items, "workflowMode": "manual", "nodeName": "taskbox serve",
            "workflowName": "taskbox serve"}


def _answer(outcome: Outcome) -> web.Response:
    prints = [print_line(params) for params in outcome.prints]
    if not outcome.ok:
        return _json(422, {"error": outcome.error, "kind": outcome.kind, "prints": prints})
    body: dict[str, Any] = {"result": outcome.items, "prints": prints}
    if outcome.warning is not None:
        body["warning"] = outcome.warning
    return _json(200, body)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), headers=headers,
                        content_type="application/json")
