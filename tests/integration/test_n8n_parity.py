"""Every behaviour n8n's own Python-runner integration tests check, against taskbox.

n8n 2.27's ``tests/integration`` has 31 tests: ``test_execution.py`` (26),
``test_health_check.py`` (2), ``test_rpc.py`` (3). Each test here is named after the
n8n test whose behaviour it pins, runs a real ``taskbox connect`` child exactly as
n8n's fixture starts its runner (health-check line on stdout, a broker that never
answers RPCs: n8n_harness.py), and asserts what n8n's test asserts, or taskbox's
deliberate difference where the README's compatibility table lists one.
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.integration.n8n_harness import (
    HEALTH_LINE,
    TASK_TIMEOUT,
    RunnerProcess,
    SilentBroker,
    node_settings,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: What n8n's fixtures add to the runner's environment.
WILDCARD = {"N8N_RUNNERS_STDLIB_ALLOW": "*"}
ENV_BLOCKED = {"N8N_RUNNERS_STDLIB_ALLOW": "os", "N8N_BLOCK_RUNNER_ENV_ACCESS": "true"}
ENV_ALLOWED = {"N8N_RUNNERS_STDLIB_ALLOW": "os", "N8N_BLOCK_RUNNER_ENV_ACCESS": "false"}


class Pair:
    """One broker and one runner child, shared by a module's tests of one kind."""

    def __init__(self, broker: SilentBroker, runner: RunnerProcess) -> None:
        self.broker = broker
        self.runner = runner

    async def run(self, code: str, mode: str = "all_items", items: list[Any] | None = None,
                  continue_on_fail: bool = False, timeout: float = 5.0) -> dict[str, Any]:
        task_id = self.broker.new_task_id()
        await self.broker.send_task(task_id, node_settings(
            textwrap.dedent(code), mode, items, continue_on_fail))
        return await self.broker.wait_for_result(task_id, timeout)


async def _pair(**env: str) -> AsyncIterator[Pair]:
    broker = SilentBroker()
    await broker.start()
    runner = RunnerProcess(broker, **env)
    try:
        await runner.start()
        yield Pair(broker, runner)
    finally:
        await runner.stop()
        await broker.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def n8n() -> AsyncIterator[Pair]:
    async for pair in _pair():
        yield pair


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wildcard() -> AsyncIterator[Pair]:
    async for pair in _pair(**WILDCARD):
        yield pair


def done(message: dict[str, Any]) -> Any:
    assert message["type"] == "runner:taskdone", message
    return message["data"]["result"]


def error(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "runner:taskerror", message
    err: dict[str, Any] = message["error"]
    return err


async def refused(pair: Pair, code: str) -> str:
    """Run code the analyzer must refuse; returns the ``Line N: ...`` description."""
    err = error(await pair.run(code))
    assert err["message"] == "Security violations detected"
    description: str = err["description"]
    return description


# ---------------------------------------------------------------- the fixture itself


async def test_fixture_health_line_is_bare_on_stdout(n8n: Pair) -> None:
    """n8n's fixture waits for this exact line on stdout; the launcher adds the level."""
    lines = n8n.runner.stdout.splitlines()
    assert any(HEALTH_LINE.fullmatch(line) for line in lines)
    assert not any(line.startswith(("INFO", "WARNING")) for line in lines)
    assert "Health check server listening" not in n8n.runner.stderr


# ---------------------------------------------------------------- test_execution.py


async def test_all_items_with_success(n8n: Pair) -> None:
    items = [{"json": {"name": "Alice", "age": 30}}, {"json": {"name": "Bob", "age": 16}}]
    result = done(await n8n.run("""
        result = []
        for item in _items:
            person = item['json']
            result.append({'name': person['name'], 'adult': person['age'] >= 18})
        return result
    """, items=items))
    assert result == [{"name": "Alice", "adult": True}, {"name": "Bob", "adult": False}]


async def test_all_items_with_error(n8n: Pair) -> None:
    """n8n's message is ``str(e)``; taskbox's adds the class and the user's line
    (deliberate: the node's title names what failed where), plus lineNumber and stack."""
    err = error(await n8n.run("x = 1\nraise ValueError('Intentional error')"))
    assert "Intentional error" in err["message"]
    assert err["message"] == "ValueError: Intentional error [line 2]"
    assert err["description"] == "ValueError" and err["lineNumber"] == 2
    assert 'File "<code>", line 2' in err["stack"] and "taskbox" not in err["stack"]


async def test_syntax_error_text_and_line(n8n: Pair) -> None:
    """n8n: ``'(' was never closed (<unknown>, line 1)``, message only."""
    err = error(await n8n.run("x = 1\nreturn ("))
    assert err["message"] == "SyntaxError: '(' was never closed [line 2]"
    assert err["lineNumber"] == 2


@pytest.mark.parametrize("mode", ["all_items", "per_item"])
async def test_query_is_none_outside_tool_nodes(n8n: Pair, mode: str) -> None:
    """All items: ``_query`` as n8n's runner (None unless a tool node sends one); per
    item taskbox defines it too (n8n's runner has no ``_query`` there)."""
    code = "return {'q': _query}" if mode == "per_item" else "return [{'q': _query}]"
    result = done(await n8n.run(code, mode, [{"json": {}}]))
    assert (result[0]["json"] if mode == "per_item" else result[0]) == {"q": None}


async def test_all_items_with_continue_on_fail(n8n: Pair) -> None:
    result = done(await n8n.run("raise ValueError('Intentional error')", continue_on_fail=True))
    assert len(result) == 1 and "Intentional error" in result[0]["json"]["error"]


async def test_per_item_with_success(n8n: Pair) -> None:
    items = [{"json": {"value": v}} for v in (10, 20, 30)]
    result = done(await n8n.run("return {'doubled': _item['json']['value'] * 2}",
                                "per_item", items))
    assert result == [{"json": {"doubled": 2 * v}, "pairedItem": {"item": i}}
                      for i, v in enumerate((10, 20, 30))]


async def test_per_item_with_explicit_json_and_binary(n8n: Pair) -> None:
    binary = {"data": {"data": "aGk=", "mimeType": "text/plain", "fileName": "a.txt"}}
    result = done(await n8n.run(
        f"return {{'json': {{'v': _item['json']['v']}}, 'binary': {binary!r}}}",
        "per_item", [{"json": {"v": 1}}]))
    assert result == [{"json": {"v": 1}, "binary": binary, "pairedItem": {"item": 0}}]


async def test_per_item_with_binary_only(n8n: Pair) -> None:
    binary = {"data": {"data": "aGk=", "mimeType": "text/plain"}}
    result = done(await n8n.run(f"return {{'binary': {binary!r}, 'extra': 1}}", "per_item",
                                [{"json": {}}]))
    assert result == [{"json": {"extra": 1}, "binary": binary, "pairedItem": {"item": 0}}]


async def test_per_item_with_filtering(n8n: Pair) -> None:
    items = [{"json": {"value": v}} for v in (5, 15, 25, 8)]
    result = done(await n8n.run("""
        value = _item['json']['value']
        if value > 10:
            return {'value': value, 'passed': True}
        return None
    """, "per_item", items))
    assert result == [{"json": {"value": 15, "passed": True}, "pairedItem": {"item": 1}},
                      {"json": {"value": 25, "passed": True}, "pairedItem": {"item": 2}}]


async def test_per_item_with_continue_on_fail(n8n: Pair) -> None:
    """Deliberate difference: n8n's runner stops at the first failing item and returns
    one error item; taskbox (like n8n's JavaScript Code node) keeps going and returns
    one error item per failing item, paired, between the good ones."""
    items = [{"json": {"value": v}} for v in (10, 0, 20)]
    result = done(await n8n.run("return {'result': 100 / _item['json']['value']}",
                                "per_item", items, continue_on_fail=True))
    assert [r["pairedItem"] for r in result] == [{"item": 0}, {"item": 1}, {"item": 2}]
    assert result[0]["json"] == {"result": 10.0} and result[2]["json"] == {"result": 5.0}
    assert "division by zero" in result[1]["json"]["error"]


async def test_datetime_strptime_and_strftime_with_stdlib_wildcard(wildcard: Pair) -> None:
    result = done(await wildcard.run("""
        from datetime import datetime
        d = datetime.strptime('2024-02-29 13:45', '%Y-%m-%d %H:%M')
        return [{'json': {'s': d.strftime('%d/%m/%Y'), 'raw': d}}]
    """))
    assert result == [{"json": {"s": "29/02/2024", "raw": "2024-02-29 13:45:00"}}]


async def test_time_strptime_with_stdlib_wildcard(wildcard: Pair) -> None:
    result = done(await wildcard.run("""
        import time
        t = time.strptime('2024-02-29', '%Y-%m-%d')
        return [{'json': {'year': t.tm_year, 'yday': t.tm_yday}}]
    """))
    assert result == [{"json": {"year": 2024, "yday": 60}}]


async def test_warnings_warn_with_stdlib_wildcard(wildcard: Pair) -> None:
    result = done(await wildcard.run("""
        import warnings
        warnings.warn('careful')
        return [{'json': {'ok': True}}]
    """))
    assert result == [{"json": {"ok": True}}]


async def test_cannot_access_builtins_via_globals(n8n: Pair) -> None:
    """Deliberate difference in wording: n8n's runner fails on ``globals`` (a denied
    builtin) once the code runs; taskbox refuses the snippet before it runs and names
    every way out it uses (``'__builtins__'`` and ``__import__``)."""
    err = error(await n8n.run("""
        b = globals()['__builtins__']
        return [{'json': {'pid': b['__import__']('os').getpid()}}]
    """))
    assert err["message"] == "Security violations detected"
    assert "Line 2: Access to name '__builtins__' is disallowed" in err["description"]


async def test_cannot_access_builtins_via_locals(n8n: Pair) -> None:
    """As above; and with the analyzer out of the way ``locals`` itself is not there."""
    err = error(await n8n.run("""
        b = locals()['__builtins__']
        return [{'json': {'pid': b['__import__']('os').getpid()}}]
    """))
    assert err["message"] == "Security violations detected"
    assert "'__builtins__'" in err["description"]
    err = error(await n8n.run("return [{'n': len(locals())}]"))
    assert err["message"] == "NameError: name 'locals' is not defined [line 1]"


async def test_cancel_during_execution(n8n: Pair) -> None:
    task_id = n8n.broker.new_task_id()
    await n8n.broker.send_task(task_id, node_settings(
        "n = 0\nwhile n < 10**12:\n    n += 1\nreturn [{'late': 1}]"))
    await n8n.broker.wait_for(lambda m: m.get("type") == "runner:taskaccepted"
                              and m.get("taskId") == task_id, 5)
    await asyncio.sleep(0.3)
    await n8n.broker.cancel_task(task_id, "Cancelled during execution")
    err = error(await n8n.broker.wait_for_result(task_id))
    assert err["message"] == "Task was cancelled"
    await asyncio.sleep(1.0)  # the code would have finished by now: no second answer
    assert len(n8n.broker.results(task_id)) == 1


async def test_timeout_during_execution(n8n: Pair) -> None:
    err = error(await n8n.run("while True:\n    pass", timeout=TASK_TIMEOUT + 5))
    assert err["message"] == f"Task execution timed out after {TASK_TIMEOUT} seconds"
    assert "timed out" in err["message"].lower()


async def test_stdlib_submodules_with_wildcard(wildcard: Pair) -> None:
    result = done(await wildcard.run("""
        from collections.abc import Iterable
        return [{'json': {'is_iterable': isinstance([1, 2, 3], Iterable)}}]
    """))
    assert result == [{"json": {"is_iterable": True}}]


async def test_cannot_bypass_import_restrictions_via_builtins_dict(n8n: Pair) -> None:
    message = await n8n.run("os = __builtins__['__import__']('os')\nprint(os.getpid())")
    err = error(message)
    assert err["message"] == "Security violations detected"
    assert "Line 1: Access to name '__builtins__' is disallowed" in err["description"]
    assert n8n.broker.console(message["taskId"]) == []  # refused before anything ran


async def test_cannot_bypass_import_restrictions_via_spec_loader(n8n: Pair) -> None:
    code = "m = __spec__.loader.load_module('os')\nreturn []"
    assert "__spec__" in await refused(n8n, code)


async def test_cannot_bypass_import_restrictions_via_loader(n8n: Pair) -> None:
    code = "m = __loader__.load_module('os')\nreturn []"
    assert "'__loader__'" in await refused(n8n, code)


async def test_cannot_bypass_import_restrictions_via_sys_builtins(wildcard: Pair) -> None:
    code = "import sys\nos = sys.__builtins__['__import__']('os')"
    assert "__builtins__" in await refused(wildcard, code)


async def test_cannot_bypass_via_format_string(n8n: Pair) -> None:
    code = "return [{'x': '{0.__class__.__base__}'.format(1)}]"
    assert "String pattern accessing '__class__' is disallowed" in await refused(n8n, code)


async def test_cannot_access_name_mangled_attributes(n8n: Pair) -> None:
    assert "name-mangled" in await refused(n8n, "x = _items._List__secret\nreturn []")


async def _env(pair: Pair, mode: str) -> dict[str, str]:
    code = ("import os\nreturn [{'env': dict(os.environ)}]" if mode == "all_items"
            else "import os\nreturn {'env': dict(os.environ)}")
    result = done(await pair.run(code, mode, [{"json": {}}]))
    env: dict[str, str] = (result[0]["env"] if mode == "all_items"
                           else result[0]["json"]["env"])
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env_default() -> AsyncIterator[Pair]:
    async for pair in _pair(N8N_RUNNERS_STDLIB_ALLOW="os", TB12_VISIBLE="visible-value"):
        yield pair


@pytest.mark.parametrize("mode", ["all_items", "per_item"])
async def test_env_access_blocked_by_default(env_default: Pair, mode: str) -> None:
    assert await _env(env_default, mode) == {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env_blocked() -> AsyncIterator[Pair]:
    async for pair in _pair(**ENV_BLOCKED, TB12_VISIBLE="visible-value"):
        yield pair


@pytest.mark.parametrize("mode", ["all_items", "per_item"])
async def test_env_access_blocked(env_blocked: Pair, mode: str) -> None:
    assert await _env(env_blocked, mode) == {}


CANARY_DIRECT = "canary-direct-4d1f7a9e2b"
CANARY_FILE = "canary-file-8c2e6b0d5f"
CANARY_SECRET = "canary-secret-3a7d9f1c6e"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env_allowed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    token_file = tmp_path_factory.mktemp("tb12") / "grant"
    token_file.write_text(CANARY_FILE + "\n")
    secrets = {
        "N8N_RUNNERS_GRANT_TOKEN_FILE": str(token_file),  # the grant token, from a file
        "N8N_RUNNERS_AUTH_TOKEN": CANARY_DIRECT,
        "N8N_RUNNERS_SOME_SECRET": CANARY_SECRET,
        "COPY_OF_THE_GRANT": CANARY_FILE,  # a secret's value under an innocent name
        "TB12_VISIBLE": "visible-value",
    }
    broker = SilentBroker()
    await broker.start()
    runner = RunnerProcess(broker, **ENV_ALLOWED, **secrets)
    del runner.env["N8N_RUNNERS_GRANT_TOKEN"]
    try:
        await runner.start()
        yield Pair(broker, runner)
    finally:
        await runner.stop()
        await broker.stop()


@pytest.mark.parametrize("mode", ["all_items", "per_item"])
async def test_env_access_allowed(env_allowed: Pair, mode: str) -> None:
    env = await _env(env_allowed, mode)
    assert env["TB12_VISIBLE"] == "visible-value"
    assert env["PATH"] == os.environ["PATH"]
    assert env["N8N_BLOCK_RUNNER_ENV_ACCESS"] == "false"
    shown = json.dumps(env)
    for canary in (CANARY_DIRECT, CANARY_FILE, CANARY_SECRET):
        assert canary not in shown, [k for k, v in env.items() if canary in v]
    for name in ("N8N_RUNNERS_GRANT_TOKEN_FILE", "N8N_RUNNERS_AUTH_TOKEN",
                 "N8N_RUNNERS_SOME_SECRET", "COPY_OF_THE_GRANT"):
        assert name not in env


def _session_pids(leader: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # session id
            pids.append(int(entry.name))
    return pids


async def test_env_access_allowed_keeps_zygote_and_argv_clean(env_allowed: Pair) -> None:
    await _env(env_allowed, "all_items")  # workers have run tasks with the environment
    assert env_allowed.runner.proc is not None
    pids = _session_pids(env_allowed.runner.proc.pid)
    assert pids, "no zygote or worker found"
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # a worker that has just ended
        assert b"TB12_VISIBLE" not in environ and b"TB12_VISIBLE" not in cmdline
        for canary in (CANARY_DIRECT, CANARY_FILE, CANARY_SECRET):
            assert canary.encode() not in environ + cmdline


# ---------------------------------------------------------------- test_health_check.py


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


async def test_health_check_server_responds(n8n: Pair) -> None:
    assert await asyncio.to_thread(_get, n8n.runner.health_url) == (200, "OK")


async def test_health_check_server_responds_mid_execution(n8n: Pair) -> None:
    task_id = n8n.broker.new_task_id()
    await n8n.broker.send_task(task_id, node_settings(
        "for _ in range(10_000_000):\n    pass\nreturn [{'result': 'completed'}]"))
    await asyncio.sleep(0.3)
    assert await asyncio.to_thread(_get, n8n.runner.health_url) == (200, "OK")
    await n8n.broker.wait_for_result(task_id, TASK_TIMEOUT + 5)


# ---------------------------------------------------------------- test_rpc.py


async def _console(pair: Pair, code: str) -> tuple[dict[str, Any], list[list[str]]]:
    task_id = pair.broker.new_task_id()
    await pair.broker.send_task(task_id, node_settings(textwrap.dedent(code)))
    message = await pair.broker.wait_for_result(task_id, 5.0)
    return message, pair.broker.console(task_id)


async def test_print_basic_types(n8n: Pair) -> None:
    message, console = await _console(n8n, """
        print("Hello, World!")
        print(42)
        print(3.14)
        print(True)
        print(None)
        print("Multiple", "args", 123, False)
        return [{"printed": "ok"}]
    """)
    assert done(message) == [{"printed": "ok"}]
    assert console == [["'Hello, World!'"], ["42"], ["3.14"], ["True"], ["None"],
                       ["'Multiple'", "'args'", "123", "False"]]


async def test_print_complex_types(n8n: Pair) -> None:
    message, console = await _console(n8n, """
        print({"name": "John", "age": 30, "active": True})
        print([1, 2, "three", {"four": 4}])
        return [{"result": "success"}]
    """)
    assert done(message) == [{"result": "success"}]
    assert console == [['{"name": "John", "age": 30, "active": true}'],
                       ['[1, 2, "three", {"four": 4}]']]


async def test_print_edge_cases(n8n: Pair) -> None:
    message, console = await _console(n8n, """
        print("Hello 世界 🌍")
        print({"emoji": "🚀", "chinese": "你好", "arabic": "مرحبا"})
        print("Line\\nbreak")
        print("Tab\\tseparated")
        print('Quote "test" here')
        print()
        print("")
        print("   ")
        print([])
        print({})
        print(())
        print("x" * 1_000)
        return [{"test": "complete"}]
    """)
    assert done(message) == [{"test": "complete"}]
    assert console == [["'Hello 世界 🌍'"], ['{"emoji": "🚀", "chinese": "你好", "arabic": "مرحبا"}'],
                       ["'Line\nbreak'"], ["'Tab\tseparated'"], ["'Quote \"test\" here'"],
                       [], ["''"], ["'   '"], ["[]"], ["{}"], ["[]"], ["'" + "x" * 1000 + "'"]]


# ---------------------------------------------------------------- prints never hold a result


async def test_unanswered_prints_never_hold_the_result(n8n: Pair) -> None:
    """The broker never answers; every task still ends at once, with exactly one answer,
    its prints ahead of it on the wire and in order (TASKBOX_RPC_TIMEOUT is 30 s)."""
    codes = [("print('a')\nprint('b')\nreturn [{'ok': 1}]", "all_items", "runner:taskdone"),
             ("print('a')\nprint('b')\nraise ValueError('x')", "all_items", "runner:taskerror"),
             ("print('a')\nprint('b')\nreturn {'ok': 1}", "per_item", "runner:taskdone"),
             ("print('a')\nprint('b')\nraise ValueError('x')", "per_item", "runner:taskdone")]
    for code, mode, expected in codes:
        task_id = n8n.broker.new_task_id()
        started = time.monotonic()
        await n8n.broker.send_task(task_id, node_settings(
            code, mode, [{"json": {}}], continue_on_fail=mode == "per_item"))
        message = await n8n.broker.wait_for_result(task_id, 5.0)
        assert time.monotonic() - started < 3.0
        assert message["type"] == expected
        ours = [m for m in n8n.broker.messages if m.get("taskId") == task_id]
        kinds = [m["type"] for m in ours]
        assert kinds[-3:] == ["runner:rpc", "runner:rpc", expected]
        assert [m["params"] for m in ours if m["type"] == "runner:rpc"] == [["'a'"], ["'b'"]]
    await asyncio.sleep(0.5)
    assert all(len(n8n.broker.results(t)) == 1
               for t in {m["taskId"] for m in n8n.broker.messages if "taskId" in m
                         and m["type"] in ("runner:taskdone", "runner:taskerror")})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def short_rpc() -> AsyncIterator[Pair]:
    async for pair in _pair(TASKBOX_RPC_TIMEOUT="1"):
        yield pair


async def test_unanswered_helper_calls_still_wait_for_their_timeout(short_rpc: Pair) -> None:
    started = time.monotonic()
    result = done(await short_rpc.run("""
        try:
            _helpers.httpRequest({"url": "http://127.0.0.1:9/"})
        except _helpers.RpcError as e:
            return [{"error": e.message}]
    """))
    elapsed = time.monotonic() - started
    assert result == [{"error": "Helper call helpers.httpRequest timed out after 1 s"}]
    assert 1.0 <= elapsed < 4.0


# ---------------------------------------------------------------- exit codes


async def test_sigterm_when_idle_exits_0() -> None:
    broker = SilentBroker()
    await broker.start()
    runner = RunnerProcess(broker)
    try:
        await runner.start()
        await broker.wait_for(lambda m: m.get("type") == "runner:taskoffer", 10)
        assert await runner.stop() == 0
    finally:
        await runner.stop()
        await broker.stop()


async def test_invalid_configuration_exits_2_naming_the_variable() -> None:
    broker = SilentBroker()
    await broker.start()
    runner = RunnerProcess(broker, N8N_RUNNERS_MAX_CONCURRENCY="lots")
    try:
        with pytest.raises(RuntimeError):
            await runner.start(timeout=20)
        assert await runner.stop() == 2
        assert ("invalid configuration: N8N_RUNNERS_MAX_CONCURRENCY: must be an integer, "
                "got 'lots'") in runner.stdout
    finally:
        await broker.stop()
