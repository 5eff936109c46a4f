"""The broker's HTTP surface: /healthz, /runners/auth, and upgrade refusals (protocol.md §2, §3)."""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp
import pytest

from taskbox.broker import EmbeddedBroker, GrantStore
from tests.broker.conftest import AUTH, BrokerFactory


async def post_auth(broker: EmbeddedBroker, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with session.post(f"{broker.uri}/runners/auth", **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


async def upgrade_status(broker: EmbeddedBroker, path: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{broker.uri}{path}", headers=headers)
        return info.value.status


async def test_healthz(broker: EmbeddedBroker) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{broker.uri}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_uri_and_port(broker: EmbeddedBroker) -> None:
    assert broker.port > 0
    assert broker.uri == f"http://127.0.0.1:{broker.port}"


async def test_auth_success_returns_grant_token(broker: EmbeddedBroker) -> None:
    status, body = await post_auth(broker, {"token": AUTH})
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{64}", body["data"]["token"])


async def test_auth_wrong_token_is_403(broker: EmbeddedBroker) -> None:
    for token in ("wrong", AUTH + "x", ""):
        status, body = await post_auth(broker, {"token": token})
        assert (status, body) == (403, {"code": 403, "message": "Forbidden"})


@pytest.mark.parametrize("body,raw", [
    (None, b"{not json"), ({"nope": 1}, None), ({"token": 5}, None), ([AUTH], None),
])
async def test_auth_malformed_body_is_400(broker: EmbeddedBroker, body: Any,
                                          raw: bytes | None) -> None:
    status, resp = await post_auth(broker, body, raw)
    assert status == 400
    assert resp["code"] == 400


async def test_auth_rate_limited_at_5_per_second(make_broker: BrokerFactory) -> None:
    broker = await make_broker(rate_limit=5.0)
    statuses = [(await post_auth(broker, {"token": AUTH})) for _ in range(7)]
    assert [s for s, _ in statuses] == [200] * 5 + [429, 429]
    assert statuses[-1][1] == {"message": "Too many requests"}


async def test_grant_from_auth_endpoint_opens_websocket(broker: EmbeddedBroker) -> None:
    _, body = await post_auth(broker, {"token": AUTH})
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{broker.uri}/runners/_ws?id=r1",
            headers={"Authorization": f"Bearer {body['data']['token']}"}) as ws:
        msg = await ws.receive_json(timeout=2)
        assert msg == {"type": "broker:inforequest"}


async def test_upgrade_missing_id_is_400(broker: EmbeddedBroker) -> None:
    token = broker.mint_grant_token()
    assert await upgrade_status(broker, "/runners/_ws", {"Authorization": f"Bearer {token}"}) == 400
    # The refused upgrade did not use up the token.
    assert await upgrade_status(broker, "/runners/_ws?id=", {}) == 400


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "bearer x"])
async def test_upgrade_bad_authorization_is_401(broker: EmbeddedBroker, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    assert await upgrade_status(broker, "/runners/_ws?id=r1", headers) == 401


async def test_upgrade_unknown_token_is_403(broker: EmbeddedBroker) -> None:
    assert await upgrade_status(broker, "/runners/_ws?id=r1",
                                {"Authorization": "Bearer " + "0" * 64}) == 403


async def test_grant_token_is_single_use(broker: EmbeddedBroker) -> None:
    token = broker.mint_grant_token()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{broker.uri}/runners/_ws?id=r1",
                                      headers={"Authorization": f"Bearer {token}"})
        await ws.close()
    assert await upgrade_status(broker, "/runners/_ws?id=r1",
                                {"Authorization": f"Bearer {token}"}) == 403


async def test_expired_grant_token_is_403(make_broker: BrokerFactory) -> None:
    skew = [0.0]  # GrantStore takes the broker's clock: expire the token without sleeping
    broker = await make_broker(grant_ttl=30.0, clock=lambda: time.monotonic() + skew[0])
    token = broker.mint_grant_token()
    skew[0] = 30.5
    assert await upgrade_status(broker, "/runners/_ws?id=r1",
                                {"Authorization": f"Bearer {token}"}) == 403


async def test_other_upgrade_path_is_404(broker: EmbeddedBroker) -> None:
    token = broker.mint_grant_token()
    headers = {"Authorization": f"Bearer {token}"}
    assert await upgrade_status(broker, "/runners/ws?id=r1", headers) == 404
    assert await upgrade_status(broker, "/other?id=r1", headers) == 404


async def test_upgrade_rate_limited(make_broker: BrokerFactory) -> None:
    broker = await make_broker(rate_limit=5.0)
    statuses = [await upgrade_status(broker, "/runners/_ws?id=r1", {}) for _ in range(7)]
    assert statuses == [401] * 5 + [429, 429]


async def test_upgrade_during_shutdown_is_503(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    broker._closing = True  # the window between aclose() starting and the socket closing
    try:
        token = broker.mint_grant_token()
        assert await upgrade_status(broker, "/runners/_ws?id=r1",
                                    {"Authorization": f"Bearer {token}"}) == 503
    finally:
        broker._closing = False


async def test_plain_get_on_ws_path_is_refused_without_using_the_token(
        broker: EmbeddedBroker) -> None:
    token = broker.mint_grant_token()
    async with aiohttp.ClientSession() as session, session.get(
            f"{broker.uri}/runners/_ws?id=r1",
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 400
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{broker.uri}/runners/_ws?id=r1",
                                      headers={"Authorization": f"Bearer {token}"})
        assert (await ws.receive_json(timeout=2))["type"] == "broker:inforequest"
        await ws.close()


def test_grant_store_single_use_and_ttl() -> None:
    now = [100.0]
    store = GrantStore(ttl=30.0, clock=lambda: now[0])
    a, b = store.mint(), store.mint()
    assert a != b and len(a) == 64
    assert store.consume(a) is True
    assert store.consume(a) is False  # single use
    now[0] += 30.5
    assert store.consume(b) is False  # expired
    assert store.consume("unknown") is False
    c = store.mint()  # minting purges expired tokens
    assert len(store) == 1
    now[0] += 29.0
    assert store.consume(c) is True


def test_grant_store_rejects_bad_ttl() -> None:
    with pytest.raises(ValueError):
        GrantStore(ttl=0)
