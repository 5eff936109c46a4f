"""Fixtures for the embedded broker: a broker with short timeouts and scripted fake runners.

The fake runners speak the wire protocol by hand over a real loopback websocket (the
``websockets`` client), so each test controls exactly what the broker sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from taskbox.broker import EmbeddedBroker

AUTH = "test-auth-token"
T = 2.0  # generous per-step timeout; the steps themselves take milliseconds


class FakeRunner:
    """A scripted runner: every frame is sent and checked by the test."""

    def __init__(self, broker: EmbeddedBroker, runner_id: str | None = None,
                 name: str = "Fake Runner") -> None:
        self.broker = broker
        self.runner_id = runner_id or secrets.token_hex(8)
        self.name = name
        self.ws: ClientConnection | None = None

    async def connect(self, *, register: bool = True, ping_interval: float | None = 20) -> None:
        token = self.broker.mint_grant_token()
        self.ws = await connect(
            f"ws://127.0.0.1:{self.broker.port}/runners/_ws?id={self.runner_id}",
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None, proxy=None, compression=None, ping_interval=ping_interval,
            open_timeout=T, close_timeout=1)
        if register:
            assert (await self.recv())["type"] == "broker:inforequest"
            await self.send({"type": "runner:info", "name": self.name, "types": ["python"]})
            assert (await self.recv())["type"] == "broker:runnerregistered"

    async def send(self, msg: dict[str, Any] | str) -> None:
        assert self.ws is not None
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, timeout: float = T) -> dict[str, Any]:
        assert self.ws is not None
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    async def expect(self, kind: str, timeout: float = T) -> dict[str, Any]:
        msg = await self.recv(timeout)
        assert msg["type"] == kind, msg
        return msg

    async def silent(self, timeout: float = 0.2) -> None:
        """Assert that nothing arrives within ``timeout``."""
        with pytest.raises(TimeoutError):
            msg = await self.recv(timeout)
            pytest.fail(f"unexpected frame {msg}")

    async def offer(self, offer_id: str, valid_for: int = 5000, task_type: str = "python") -> None:
        await self.send({"type": "runner:taskoffer", "offerId": offer_id,
                         "taskType": task_type, "validFor": valid_for})

    async def accept_next(self) -> tuple[str, dict[str, Any]]:
        """Take the next offer-accept, accept it, return (task_id, settings)."""
        acc = await self.expect("broker:taskofferaccept")
        await self.send({"type": "runner:taskaccepted", "taskId": acc["taskId"]})
        settings = await self.expect("broker:tasksettings")
        assert settings["taskId"] == acc["taskId"]
        return acc["taskId"], settings["settings"]

    async def done(self, task_id: str, result: Any) -> None:
        await self.send({"type": "runner:taskdone", "taskId": task_id,
                         "data": {"result": result}})

    async def rpc(self, task_id: str, call_id: str, name: str, params: list[Any]) -> None:
        await self.send({"type": "runner:rpc", "callId": call_id, "taskId": task_id,
                         "name": name, "params": params})

    async def wait_closed(self, timeout: float = T) -> int | None:
        assert self.ws is not None
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class AutoRunner(FakeRunner):
    """Keeps ``slots`` offers open and completes every task with its items echoed."""

    def __init__(self, broker: EmbeddedBroker, slots: int = 10, **kwargs: Any) -> None:
        super().__init__(broker, **kwargs)
        self.slots = slots
        self._seq = 0
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.connect()
        for _ in range(self.slots):
            await self._offer()
        self._loop = asyncio.create_task(self._serve())

    async def _offer(self) -> None:
        self._seq += 1
        await self.offer(f"o{self._seq}")

    async def _serve(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg["type"] == "broker:taskofferaccept":
                await self.send({"type": "runner:taskaccepted", "taskId": msg["taskId"]})
            elif msg["type"] == "broker:tasksettings":
                await self.done(msg["taskId"], msg["settings"].get("items", []))
                await self._offer()

    async def stop(self) -> None:
        await self.close()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop


BrokerFactory = Callable[..., Awaitable[EmbeddedBroker]]


@pytest.fixture
async def make_broker() -> AsyncIterator[BrokerFactory]:
    brokers: list[EmbeddedBroker] = []

    async def factory(**kwargs: Any) -> EmbeddedBroker:
        options: dict[str, Any] = {"auth_token": AUTH, "rate_limit": 1000.0,
                                   "accept_timeout": 0.5, "task_timeout": 5.0,
                                   "request_timeout": 5.0, "close_timeout": 0.5}
        options.update(kwargs)
        broker = EmbeddedBroker(**options)
        await broker.start()
        brokers.append(broker)
        return broker

    yield factory
    for broker in brokers:
        await broker.aclose()


@pytest.fixture
async def broker(make_broker: BrokerFactory) -> EmbeddedBroker:
    return await make_broker()


@pytest.fixture
async def runner(broker: EmbeddedBroker) -> AsyncIterator[FakeRunner]:
    fake = FakeRunner(broker)
    await fake.connect()
    yield fake
    await fake.close()


def settings(items: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"code": "return _items", "nodeMode": "runOnceForAllItems",
            "workflowMode": "manual", "continueOnFail": False,
            "items": items if items is not None else [{"json": {"a": 1}}], **extra}
