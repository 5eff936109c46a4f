"""10 MB through the node helpers, and how long the runner's event loop stalls meanwhile.

The embedded broker lives in this process; the runner is a child process (this file
with ``--runner-child``) that runs the real ``Runner`` plus a ticker coroutine: every
10 ms it notes how late it woke up. A late tick is time the event loop could not
answer a ping, an offer or another task. The ticker's clock (``time.monotonic``) is
the system-wide one, so lateness is matched to the task windows measured here.

Cases (each ``--runs`` times, after one warm-up):

* ``control``: the ``get`` task's 14 MB of settings, no helper call (what the large
  task alone costs the loop);
* ``get``: ``_helpers.getBinaryDataBuffer(0, "data")`` of a 10 MiB binary that came
  inline with the task (n8n -> runner -> worker);
* ``prepare``: ``_helpers.prepareBinaryData(<10 MiB>, "out.bin")`` (worker -> runner
  -> n8n, and the entry back);
* ``round trip``: both, returning the entry under ``binary`` (a 14 MB taskdone too).

"in task" is the helper call's time as user code sees it (``time.perf_counter``
around the call); "task" is submit -> outcome at the broker. Also printed: what one
un-sliced conversion of the same data costs on this machine, i.e. what the loop would
stall for without the slicing (protocol/buffers.py).

Run: ``.venv/bin/python bench/rpc_roundtrip.py [--runs N] [--size BYTES]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from taskbox.broker import EmbeddedBroker

AUTH_TOKEN = "bench-rpc-auth-token"
TICK = 0.010  # ticker period, s

CONTROL = """
return [{"json": {"ms": 0.0, "n": len(_items)}}]
"""

GET = """
import time
t = time.perf_counter()
raw = _helpers.getBinaryDataBuffer(0, "data")
ms = (time.perf_counter() - t) * 1000
return [{"json": {"ms": ms, "n": len(raw)}}]
"""

PREPARE = """
import time
data = bytes(range(256)) * ({size} // 256)
t = time.perf_counter()
entry = _helpers.prepareBinaryData(data, "out.bin")
ms = (time.perf_counter() - t) * 1000
return [{{"json": {{"ms": ms, "size": entry["fileSize"]}}}}]
"""

ROUND_TRIP = """
import time
t = time.perf_counter()
raw = _helpers.getBinaryDataBuffer(0, "data")
entry = _helpers.prepareBinaryData(raw[::-1], "reversed.bin")
ms = (time.perf_counter() - t) * 1000
return [{"json": {"ms": ms}, "binary": {"data": entry}}]
"""


def log(message: str) -> None:
    print(f"[rpc-bench] {message}", file=sys.stderr, flush=True)


def settings(code: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": code, "nodeMode": "runOnceForAllItems", "continueOnFail": False,
            "items": items, "workflowMode": "manual", "nodeName": "Python",
            "workflowName": "rpc bench"}


# --- the runner child ----------------------------------------------------------------------


async def _ticker(path: str) -> None:
    loop = asyncio.get_running_loop()
    with open(path, "w", buffering=1) as out:
        expected = loop.time() + TICK
        while True:
            await asyncio.sleep(max(expected - loop.time(), 0))
            now = loop.time()
            out.write(f"{now:.6f} {(now - expected) * 1000:.3f}\n")
            expected = max(expected + TICK, now)


async def _child_main() -> int:
    from taskbox.config import Config
    from taskbox.runner import Runner

    if os.environ.get("PYTHONASYNCIODEBUG"):
        import logging

        logging.basicConfig(level=logging.WARNING)
        asyncio.get_running_loop().slow_callback_duration = 0.01
    if os.environ.get("RPC_BENCH_UNSLICED"):
        _unsliced()
    runner = Runner(Config.from_env(os.environ))
    ticker = asyncio.create_task(_ticker(os.environ["RPC_BENCH_TICKS"]))
    try:
        return await runner.run()
    finally:
        ticker.cancel()


def _unsliced() -> None:
    """Comparison mode: the obvious way, one orjson call per conversion, in a thread.

    Parsing a frame and turning bytes into n8n's number list each run as one call
    under ``asyncio.to_thread``; the frame is serialized and sent in one piece.
    """
    from taskbox.protocol import buffers
    from taskbox.protocol.messages import RpcResponse
    from taskbox.protocol.runner import RunnerProtocol
    from taskbox.protocol.serde import parse_broker
    from taskbox.runner import connection, rpc_router

    def parse(raw: bytes) -> Any:
        msg = parse_broker(raw)
        if isinstance(msg, RpcResponse) and msg.data is not None:
            msg = dataclasses.replace(msg, data=buffers.revive(msg.data, []))
        return msg

    async def parse_frame(raw: bytes) -> Any:
        return await asyncio.to_thread(parse, raw)

    def as_lists(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"type": "Buffer", "data": list(value)}
        if isinstance(value, list):
            return [as_lists(v) for v in value]
        if isinstance(value, dict):
            return {k: as_lists(v) for k, v in value.items()}
        return value

    original = RunnerProtocol.send_rpc
    converted: dict[int, Any] = {}

    async def check_params(params: list[Any], max_payload: int) -> None:
        converted[id(params)] = await asyncio.to_thread(as_lists, params)

    def send_rpc(self: Any, task_id: str, name: str, params: list[Any]) -> str:
        return original(self, task_id, name, converted.pop(id(params), params))

    setattr(connection, "parse_frame", parse_frame)  # noqa: B010 - a comparison shim
    setattr(rpc_router, "check_params", check_params)  # noqa: B010
    setattr(RunnerProtocol, "send_rpc", send_rpc)  # noqa: B010
    setattr(connection, "STREAM_THRESHOLD", 1 << 40)  # noqa: B010


# --- the parent ----------------------------------------------------------------------------


def _spawn_runner(broker: EmbeddedBroker, ticks: str, log_file: Any,
                  unsliced: bool) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("N8N_")}
    env.update({
        "N8N_RUNNERS_TASK_BROKER_URI": broker.uri,
        "N8N_RUNNERS_GRANT_TOKEN": broker.mint_grant_token(),
        "N8N_RUNNERS_MAX_CONCURRENCY": "2",
        "N8N_RUNNERS_TASK_TIMEOUT": "120",
        "N8N_RUNNERS_STDLIB_ALLOW": "time",
        "TASKBOX_MEMORY_LIMIT_MB": "1024",
        "TASKBOX_RPC_TIMEOUT": "120",
        "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "warn",
        "RPC_BENCH_TICKS": ticks,
    })
    if unsliced:
        env["RPC_BENCH_UNSLICED"] = "1"
    if os.environ.get("RPC_BENCH_DEBUG"):
        env["PYTHONASYNCIODEBUG"] = "1"  # logs callbacks slower than 10 ms
    return subprocess.Popen([sys.executable, __file__, "--runner-child"], env=env,
                            stdout=log_file, stderr=subprocess.STDOUT)


def _ticks(path: str) -> list[tuple[float, float]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        when, late = line.split()
        rows.append((float(when), float(late)))
    return rows


def _lateness(ticks: list[tuple[float, float]],
              windows: list[tuple[float, float]]) -> tuple[float, float]:
    """(99th percentile, worst) lateness of the ticks inside ``windows``, in ms."""
    inside = sorted(late for when, late in ticks
                    if any(start <= when <= end + 0.05 for start, end in windows))
    if not inside:
        return 0.0, 0.0
    return inside[min(len(inside) - 1, int(len(inside) * 0.99))], inside[-1]


def unsliced_costs(size: int) -> list[tuple[str, float]]:
    """What the naive one-call conversions cost here (each would hold the GIL throughout)."""
    data = os.urandom(size)
    out = []
    t = time.perf_counter()
    text = orjson.dumps({"type": "Buffer", "data": list(data)})
    out.append(("orjson.dumps(list(bytes)) -> Buffer JSON", time.perf_counter() - t))
    t = time.perf_counter()
    bytes(orjson.loads(text)["data"])
    out.append(("orjson.loads(Buffer JSON) -> bytes", time.perf_counter() - t))
    return [(name, seconds * 1000) for name, seconds in out]


Row = tuple[str, list[float], list[float], list[tuple[float, float]]]


async def measure(runs: int, size: int, blob: bytes, unsliced: bool
                  ) -> tuple[list[Row], list[tuple[float, float]], list[tuple[float, float]]]:
    """Run every case ``runs`` times against one runner child; rows, idle window, ticks."""
    items = [{"json": {"name": "blob"},
              "binary": {"data": {"data": base64.b64encode(blob).decode(),
                                  "mimeType": "application/octet-stream",
                                  "fileName": "blob.bin"}}}]
    cases = [("control: same items, no helper", settings(CONTROL, items)),
             ("get", settings(GET, items)),
             ("prepare", settings(PREPARE.format(size=size), [{"json": {}}])),
             ("round trip", settings(ROUND_TRIP, items))]
    with tempfile.TemporaryDirectory() as tmp:
        ticks_path = str(Path(tmp) / "ticks")
        log_path = os.environ.get("RPC_BENCH_RUNNER_LOG") or str(Path(tmp) / "runner.log")
        runner_log = open(log_path, "wb")  # noqa: SIM115
        broker = EmbeddedBroker(port=0, auth_token=AUTH_TOKEN, task_timeout=120,
                                request_timeout=60, rate_limit=None,
                                max_payload=1 << 30)
        await broker.start()
        child = _spawn_runner(broker, ticks_path, runner_log, unsliced)
        rows: list[Row] = []
        try:
            await broker.wait_for_runners(1, timeout=30)
            await broker.submit(settings("return [{'ok': 1}]", []))
            idle_start = time.monotonic()
            await asyncio.sleep(1.0)
            idle = [(idle_start, time.monotonic())]
            for name, task in cases:
                windows: list[tuple[float, float]] = []
                in_task: list[float] = []
                total: list[float] = []
                for i in range(runs + 1):
                    start = time.monotonic()
                    out = await broker.submit(task)
                    end = time.monotonic()
                    if not out.ok:
                        raise RuntimeError(f"{name}: {out.error}")
                    if name == "round trip":
                        entry = out.result[0]["binary"]["data"]
                        assert base64.b64decode(entry["data"]) == blob[::-1]
                    if i == 0:
                        continue  # warm-up
                    windows.append((start, end))
                    in_task.append(out.result[0]["json"]["ms"])
                    total.append((end - start) * 1000)
                    await asyncio.sleep(0.2)
                rows.append((name, in_task, total, windows))
                log(f"{'unsliced' if unsliced else 'taskbox'} {name}: in task "
                    f"{statistics.median(in_task):.0f} ms")
        finally:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
            runner_log.close()
            await broker.aclose()
        return rows, idle, _ticks(ticks_path)


async def bench(runs: int, size: int, compare: bool) -> int:
    blob = os.urandom(size)
    modes = [False, True] if compare else [False]
    results = [(unsliced, *await measure(runs, size, blob, unsliced)) for unsliced in modes]

    print(f"## Node helpers: {size / (1 << 20):g} MiB through the RPC bridge "
          f"({runs} runs, median / max)\n")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; broker in this process, runner in a child process. "
          "Loop lateness: how late a 10 ms ticker in the runner woke up while the case's "
          "tasks ran. \"unsliced\" is the same runner doing each conversion as one orjson "
          "call in a thread and sending frames in one piece (for comparison only).\n")
    print("| runner | case | helper call(s) in task, ms | task submit -> done, ms "
          "| runner loop lateness p99 / worst, ms |")
    print("|---|---|---|---|---|")
    for unsliced, rows, idle, ticks in results:
        label = "unsliced" if unsliced else "taskbox"
        for name, in_task, total, windows in rows:
            p99, worst = _lateness(ticks, windows)
            print(f"| {label} | {name} | {statistics.median(in_task):.0f} / {max(in_task):.0f} "
                  f"| {statistics.median(total):.0f} / {max(total):.0f} "
                  f"| {p99:.1f} / {worst:.1f} |")
        p99, worst = _lateness(ticks, idle)
        print(f"| {label} | idle (1 s, no task) | - | - | {p99:.1f} / {worst:.1f} |")
    print("\nWhat one un-sliced conversion of the same data costs here (it holds the "
          "GIL, thread or not):\n")
    for what, ms in unsliced_costs(size):
        print(f"* {what}: {ms:.0f} ms")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=10 * (1 << 20))
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the unsliced comparison run")
    parser.add_argument("--runner-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runner_child:
        return asyncio.run(_child_main())
    return asyncio.run(bench(args.runs, args.size, not args.no_compare))


if __name__ == "__main__":
    sys.exit(main())
