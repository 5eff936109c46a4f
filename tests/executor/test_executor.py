"""The executor end to end: a real zygote and real confined workers.

Every hostile case is followed by a trivial task, because the one thing a user
notices after an attack is whether the next workflow still runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from taskbox.errors import SandboxUnavailable
from taskbox.executor import Executor, Limits, TaskOutcome, TaskSpec
from taskbox.executor.task import NodeMode

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALL: NodeMode = "runOnceForAllItems"
EACH: NodeMode = "runOnceForEachItem"
CANARY_VAR = "TASKBOX_TEST_CANARY"
CANARY = "canary-" + secrets.token_hex(12)

LIMITS = Limits(
    task_timeout=10.0,  # generous: hostile cases end by other limits or explicitly
    memory_limit_mb=256,
    max_payload=1_000_000,
    print_cap_bytes=10_000,
    stdlib_allow=("json", "datetime", "decimal", "math", "os", "socket", "subprocess",
                  "signal", "stat", "sys", "time", "uuid"),
    external_allow=("taskbox_sandbox", "taskbox"),
)


class Calls:
    """What the runner would see: prints in order, RPCs made."""

    def __init__(self, rpc_reply: tuple[bool, Any] = (True, None)) -> None:
        self.prints: list[list[str]] = []
        self.rpcs: list[tuple[str, list[Any]]] = []
        self.rpc_reply = rpc_reply

    def on_print(self, args: list[str]) -> None:
        self.prints.append(args)

    async def on_rpc(self, name: str, params: list[Any]) -> tuple[bool, Any]:
        self.rpcs.append((name, params))
        return self.rpc_reply


def spec(code: str, mode: NodeMode = ALL, items: list[Any] | None = None,
         continue_on_fail: bool = False, query: Any = None) -> TaskSpec:
    items = [{"json": {"a": 1}}] if items is None else items
    return TaskSpec("task-1", code, mode, continue_on_fail, orjson.dumps(items), len(items),
                    query=query)


async def run(executor: Executor, code: str, calls: Calls | None = None,
              **kwargs: Any) -> TaskOutcome:
    calls = calls or Calls()
    return await executor.run(spec(code, **kwargs), calls.on_print, calls.on_rpc)


async def assert_healthy(executor: Executor) -> None:
    outcome = await run(executor, "return [{'still': 'alive'}]")
    assert outcome.result == [{"still": "alive"}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executor() -> AsyncIterator[Executor]:
    os.environ[CANARY_VAR] = CANARY
    try:
        ex = Executor(LIMITS, max_concurrency=2, logger=logging.getLogger("test.executor"))
        layers = await ex.start()
        assert layers["seccomp"] and layers["landlock"]
        yield ex
        await ex.aclose()
    finally:
        os.environ.pop(CANARY_VAR, None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executor_1s() -> AsyncIterator[Executor]:
    async with Executor(dataclasses.replace(LIMITS, task_timeout=1.0), max_concurrency=1) as ex:
        yield ex


# ---------------------------------------------------------------- results


async def test_all_items_returns_the_value_as_is(executor):
    outcome = await run(executor, "return [{'b': it['json']['a'] + 1} for it in _items]",
                        items=[{"json": {"a": 1}}, {"json": {"a": 2}}])
    assert outcome.ok
    assert outcome.result == [{"b": 2}, {"b": 3}]
    assert (await run(executor, "x = 1")).result == []


async def test_tool_query_is_visible_as_query(executor):
    outcome = await run(executor, "return [{'q': _query, 'n': len(_items)}]",
                        items=[], query={"input": "hi"})
    assert outcome.result == [{"q": {"input": "hi"}, "n": 0}]


async def test_per_item_wraps_pairs_and_skips_none(executor):
    code = ("v = _item['json']['v']\n"
            "if v == 0:\n    return None\n"
            "if v == 1:\n    return {'json': {'w': 1}, 'binary': {'f': {'id': 'x'}}}\n"
            "return {'v': v, '_query': _query}")
    outcome = await run(executor, code, mode=EACH,
                        items=[{"json": {"v": 0}}, {"json": {"v": 1}}, {"json": {"v": 2}}])
    assert outcome.result == [
        {"json": {"w": 1}, "binary": {"f": {"id": "x"}}, "pairedItem": {"item": 1}},
        {"json": {"v": 2, "_query": None}, "pairedItem": {"item": 2}},
    ]


async def test_per_item_continue_on_fail_fails_only_bad_items(executor):
    code = "return {'q': 10 / _item['json']['d']}"
    outcome = await run(executor, code, mode=EACH, continue_on_fail=True,
                        items=[{"json": {"d": 2}}, {"json": {"d": 0}}, {"json": {"d": 5}}])
    assert outcome.result == [
        {"json": {"q": 5.0}, "pairedItem": {"item": 0}},
        {"json": {"error": "ZeroDivisionError: division by zero [line 1, for item 1]"},
         "pairedItem": {"item": 1}},
        {"json": {"q": 2.0}, "pairedItem": {"item": 2}},
    ]


async def test_all_items_continue_on_fail_turns_errors_into_an_item(executor):
    outcome = await run(executor, "x = 1\nraise ValueError('nope')", continue_on_fail=True)
    assert outcome.result == [{"json": {"error": "ValueError: nope [line 2]"}}]
    syntax = await run(executor, "return (", continue_on_fail=True)
    assert syntax.result == [{"json": {"error": "SyntaxError: '(' was never closed [line 1]"}}]


_NON_JSON_CODE = (
    "import datetime, decimal, uuid\n"
    "v = {'dt': datetime.datetime(2024, 2, 29, 13, 45, 30), 'd': datetime.date(2024, 2, 29),\n"
    "     't': datetime.time(13, 45), 'dec': decimal.Decimal('1.10'),\n"
    "     'u': uuid.UUID(int=1), 's': {1}, 'n': float('nan'), 'i': float('inf')}\n"
    "v['nested'] = [dict(v)]\n")
_NON_JSON_EXPECTED = {"dt": "2024-02-29 13:45:30", "d": "2024-02-29", "t": "13:45:00",
                      "dec": "1.10", "u": "00000000-0000-0000-0000-000000000001", "s": "{1}",
                      "n": None, "i": None}


async def test_non_json_values_are_n8n_strings_in_both_modes(executor):
    expected = {**_NON_JSON_EXPECTED, "nested": [_NON_JSON_EXPECTED]}
    outcome = await run(executor, _NON_JSON_CODE + "return [v]")
    assert outcome.result == [expected]
    outcome = await run(executor, _NON_JSON_CODE + "return {'json': v}", mode=EACH)
    assert outcome.result == [{"json": expected, "pairedItem": {"item": 0}}]


async def test_multi_line_strings_are_unchanged(executor):
    outcome = await run(executor, "if True:\n    s = '''a\n  b\nc'''\n    return [{'s': s}]")
    assert outcome.result == [{"s": "a\n  b\nc"}]


async def test_class_statements_work(executor):
    code = ("class Point:\n    def __init__(self, x):\n        self.x = x\n"
            "return [{'x': Point(3).x}]")
    assert (await run(executor, code)).result == [{"x": 3}]


async def test_strptime_works_with_datetime_allowed(executor):
    code = ("from datetime import datetime\n"
            "return [{'d': datetime.strptime('2024-02-03', '%Y-%m-%d').isoformat()}]")
    assert (await run(executor, code)).result == [{"d": "2024-02-03T00:00:00"}]


# ---------------------------------------------------------------- errors


async def test_error_line_number_is_exact(executor):
    outcome = await run(executor, "a = 1\nb = 2\nc = undefined_name\n")
    assert outcome.error is not None
    assert outcome.error["message"] == "NameError: name 'undefined_name' is not defined [line 3]"
    assert outcome.error["lineNumber"] == 3
    assert outcome.error["description"] == "NameError"
    assert 'File "<code>", line 3' in outcome.error["stack"]


async def test_syntax_error_reports_the_line(executor):
    outcome = await run(executor, "x = 1\nprint((1\n")
    assert outcome.error is not None
    assert outcome.error["message"] == "SyntaxError: '(' was never closed [line 2]"
    assert outcome.error["lineNumber"] == 2


async def test_system_exit_and_exit_are_task_errors(executor):
    outcome = await run(executor, "x = 1\nraise SystemExit(3)")
    assert outcome.error is not None
    assert outcome.error["message"] == "SystemExit: 3 [line 2]"
    outcome = await run(executor, "exit()")
    assert outcome.error is not None
    assert outcome.error["message"] == "SystemExit [line 1]"
    outcome = await run(executor, "raise KeyboardInterrupt")
    assert outcome.error is not None
    assert outcome.error["message"].startswith("KeyboardInterrupt")
    await assert_healthy(executor)


async def test_refused_import_names_the_variable(executor):
    outcome = await run(executor, "import sqlite3")
    assert outcome.error is not None
    assert outcome.error["message"].startswith(
        "ImportError: Import of standard library module 'sqlite3' is disallowed. "
        "Allowed stdlib modules: json, datetime,")
    assert "Set N8N_RUNNERS_STDLIB_ALLOW to allow it. [line 1]" in outcome.error["message"]
    outcome = await run(executor, "import orjson")
    assert outcome.error is not None
    assert "N8N_RUNNERS_EXTERNAL_ALLOW" in outcome.error["message"]


async def test_the_sandbox_never_loads_the_runner_package(executor):
    outcome = await run(executor, "import taskbox")  # allowlisted here on purpose
    assert outcome.error is not None
    assert "must never import 'taskbox'" in outcome.error["message"]


# ---------------------------------------------------------------- print and RPC


async def test_prints_arrive_in_order_with_n8n_formatting(executor):
    calls = Calls()
    code = ("print('hello', 42, None, {'k': [1, 2]})\n"
            "print('a', 'b', sep='-')\n"
            "print('no newline', end='')\n"
            "print('x', end='!\\n')\n"
            "import sys\nprint('hidden', file=sys.stderr)\n"
            "return []")
    outcome = await run(executor, code, calls)
    assert outcome.ok
    assert calls.prints == [
        ["'hello'", "42", "None", '{"k": [1, 2]}'],
        ["'a-b'"],
        ["'no newline'"],
        ["'x!\n'"],
    ]


async def test_prints_survive_an_error(executor):
    calls = Calls()
    outcome = await run(executor, "print('before')\nraise RuntimeError('boom')", calls)
    assert outcome.error is not None
    assert calls.prints == [["'before'"]]


async def test_print_flood_is_capped_with_one_marker(executor):
    calls = Calls()
    outcome = await run(executor, "for i in range(100000):\n    print('x' * 100)\nreturn []",
                        calls)
    assert outcome.ok
    marker = ["[Output truncated - print output exceeded 10000 bytes]"]
    assert calls.prints[-1] == marker
    assert calls.prints.count(marker) == 1
    assert sum(len(a) for p in calls.prints[:-1] for a in p) <= 10_000
    await assert_healthy(executor)


async def test_rpc_round_trip(executor):
    calls = Calls(rpc_reply=(True, {"echo": 1}))
    code = "from taskbox_sandbox.execute import _rpc\nreturn [{'r': _rpc('ping', [1, 'a'])}]"
    outcome = await run(executor, code, calls)
    assert outcome.result == [{"r": {"echo": 1}}]
    assert calls.rpcs == [("ping", [1, "a"])]
    refused = Calls(rpc_reply=(False, "Method not allowed"))
    outcome = await run(executor, code, refused)
    assert outcome.error is not None
    assert "RPC ping failed: Method not allowed" in outcome.error["message"]


# ---------------------------------------------------------------- limits


async def test_timeout_kills_the_task_and_the_executor_carries_on(executor_1s):
    calls = Calls()
    outcome = await run(executor_1s, "print('started')\nwhile True:\n    pass", calls)
    assert outcome.kind == "timeout"
    assert outcome.error is not None
    assert outcome.error["message"] == "Task execution timed out after 1 second"
    assert calls.prints == [["'started'"]]
    await assert_healthy(executor_1s)


async def test_timeout_under_continue_on_fail_is_an_error_item(executor_1s):
    outcome = await run(executor_1s, "while True:\n    pass", continue_on_fail=True)
    assert outcome.result == [{"json": {"error": "Task execution timed out after 1 second"}}]


@pytest.mark.parametrize("code", [
    "try:\n    x = [b'x' * 10**6 for _ in range(10**5)]\nexcept MemoryError:\n    pass\n"
    "y = []\nwhile True:\n    y.append(b'y' * 10**6)",
    "try:\n    x = [b'x' * 10**6 for _ in range(10**5)]\nexcept Exception:\n    pass\n"
    "return [{'survived': True}]",
    "try:\n    try:\n        x = bytearray(10**12)\n    except MemoryError as e:\n"
    "        raise ValueError('other') from e\nexcept ValueError:\n    pass\nreturn []",
])
async def test_memory_bomb_is_a_memory_error(executor, code):
    outcome = await run(executor, code)
    assert outcome.kind == "memory"
    assert outcome.error is not None
    assert outcome.error["message"] == "Task exceeded the memory limit of 256 MiB"
    await assert_healthy(executor)


async def test_huge_result_is_a_payload_error(executor):
    outcome = await run(executor, "return [{'s': 'x' * 2_000_000}]")
    assert outcome.kind == "payload"
    assert outcome.error is not None
    assert outcome.error["message"] == (
        "Task result is too large: 2000010 bytes exceeds N8N_RUNNERS_MAX_PAYLOAD "
        "(1000000 bytes)")
    await assert_healthy(executor)


async def test_oversized_frame_from_a_hostile_worker_is_refused(executor):
    code = ("import os, stat\n"
            "for fd in range(3, 64):\n"
            "    try:\n"
            "        if stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
            "            os.write(fd, (2**31).to_bytes(4, 'big'))\n"
            "    except OSError:\n"
            "        pass\n"
            "while True:\n    pass")
    outcome = await run(executor, code)
    assert outcome.kind == "payload"
    assert outcome.error is not None
    assert "2147483648 bytes exceeds N8N_RUNNERS_MAX_PAYLOAD" in outcome.error["message"]
    await assert_healthy(executor)


async def test_worker_killed_by_sigsegv_names_the_signal(executor):
    outcome = await run(executor, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert outcome.kind == "signal"
    assert outcome.error is not None
    assert outcome.error["message"] == "Task process was killed by signal SIGSEGV"
    await assert_healthy(executor)


async def test_cpu_burn_hits_the_cpu_limit():
    limits = Limits(task_timeout=10.0, cpu_limit_s=1, memory_limit_mb=256)
    async with Executor(limits, max_concurrency=1) as ex:
        outcome = await run(ex, "while True:\n    pass")
        assert outcome.kind == "cpu"
        assert outcome.error is not None
        assert outcome.error["message"] == "Task exceeded the CPU time limit of 1 second"
        await assert_healthy(ex)


# ---------------------------------------------------------------- confinement


async def test_fork_and_exec_are_refused(executor):
    code = ("import os\ntry:\n    pid = os.fork()\nexcept OSError as e:\n"
            "    return [{'fork': repr(e).split('(')[0]}]\n"
            "if pid == 0:\n    os._exit(0)\nreturn [{'fork': 'succeeded'}]")
    assert (await run(executor, code)).result == [{"fork": "PermissionError"}]
    outcome = await run(executor, "import subprocess\nsubprocess.run(['/bin/true'])")
    assert outcome.error is not None
    assert "PermissionError" in outcome.error["message"]
    await assert_healthy(executor)


async def test_loopback_connect_is_refused(executor):
    connections = 0

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        code = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
                f"s.connect(('127.0.0.1', {port}))\nreturn [{{'connected': True}}]")
        outcome = await run(executor, code)
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.error is not None
    assert "PermissionError" in outcome.error["message"]
    assert connections == 0
    await assert_healthy(executor)


async def test_no_environment_secret_is_readable(executor):
    runner_pid = os.getpid()
    code = (
        "import os\nout = []\n"
        f"for p in ['self', str(os.getppid()), '{runner_pid}', '{executor.zygote_pid}', '1']:\n"
        "    try:\n"
        "        fd = os.open(f'/proc/{p}/environ', os.O_RDONLY)\n"
        "        out.append(os.read(fd, 1 << 16).decode('latin-1'))\n"
        "    except OSError as e:\n"
        "        out.append(repr(e).split('(')[0])\n"
        "out.append(dict(os.environ))\n"
        "print(out)\nreturn [{'out': out}]")
    calls = Calls()
    outcome = await run(executor, code, calls)
    seen = orjson.dumps([outcome.result, outcome.error, calls.prints]).decode()
    assert CANARY not in seen
    assert outcome.result is not None
    out = outcome.result[0]["out"]
    assert out[2] == "PermissionError"  # the runner's environ
    assert out[-1] == {}


async def test_zygote_environment_holds_nothing_secret(executor):
    assert os.environ[CANARY_VAR] == CANARY  # the runner has it...
    with open(f"/proc/{executor.zygote_pid}/environ", "rb") as f:
        environ = f.read()
    assert environ == b"LANG=C.UTF-8\x00"  # ...the zygote never did


async def test_writing_a_file_fails(executor, tmp_path):
    target = tmp_path / "escape.txt"
    os.chmod(tmp_path, 0o777)
    code = (f"import os\nfd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT, 0o666)\n"
            "os.write(fd, b'pwned')\nreturn []")
    outcome = await run(executor, code)
    assert outcome.error is not None
    assert "PermissionError" in outcome.error["message"]
    assert not target.exists()
    await assert_healthy(executor)


async def test_cancelling_run_kills_the_worker(executor):
    calls = Calls()
    task = asyncio.create_task(executor.run(
        spec("import os\nprint(os.getpid())\nwhile True:\n    pass"),
        calls.on_print, calls.on_rpc))
    while not calls.prints:
        await asyncio.sleep(0.005)
    pid = int(calls.prints[0][0])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while os.path.exists(f"/proc/{pid}"):  # killed, then reaped by the zygote
        await asyncio.sleep(0.005)
    await assert_healthy(executor)


async def test_zygote_killed_mid_task_fails_it_then_the_next_task_works(executor):
    old = executor.zygote_pid
    assert old is not None
    calls = Calls()
    task = asyncio.create_task(executor.run(
        spec("print('running')\nwhile True:\n    pass"), calls.on_print, calls.on_rpc))
    while not calls.prints:
        await asyncio.sleep(0.005)
    os.kill(old, signal.SIGKILL)
    outcome = await task
    assert outcome.error is not None
    assert "sandbox crashed" in outcome.error["message"]
    await assert_healthy(executor)
    assert executor.zygote_pid not in (None, old)


async def test_missing_required_layer_refuses_to_start():
    limits = Limits(require_layers=("no-such-layer",))
    ex = Executor(limits, max_concurrency=1)
    with pytest.raises(SandboxUnavailable, match="no-such-layer"):
        await ex.start()
    await ex.aclose()


async def test_format_guard_refuses_attribute_paths_with_n8ns_wording(executor):
    code = ("path = '.'.join(['0', '_' + '_class_' + '_'])\n"
            "return [{'x': ('{' + path + '}').format(1)}]")
    outcome = await run(executor, code)
    assert outcome.error is not None
    assert outcome.error["message"] == "Security violation detected"
    assert outcome.error["description"] == (
        "String pattern accessing '__class__' is disallowed, because it can be used to "
        "bypass security restrictions.")
    assert outcome.error["lineNumber"] == 2
    ok = await run(executor, "return [{'x': '{0} {1:>3}'.format('a', 7)}]")
    assert ok.result == [{"x": "a   7"}]
