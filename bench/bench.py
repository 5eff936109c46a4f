"""``make bench``: taskbox's performance table (issue 3).

Everything runs on loopback: the embedded broker lives in this process and the runner
is a real ``taskbox`` subprocess (runner -> zygote -> workers), started exactly as
n8n's launcher would start it. Every time below is taken on the broker side with
``time.monotonic()``; "accept -> done" is ``runner:taskaccepted`` arriving to the
outcome being decided, the span n8n-python-runner.md §10 measures for n8n's runner.

Prints a markdown table (measured value, target, pass/fail) on stdout; progress and
notes go to stderr. ``--quick`` runs a smaller version of every row. The process exits
0 whatever the numbers are: the machine this runs on is shared and noisy, so a missed
target is something to read, not a build failure (tests never assert timings).

Run it with ``make bench`` or ``.venv/bin/python bench/bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from taskbox.broker import EmbeddedBroker, RequestOutcome
from taskbox.executor.pool import IDLE_SHRINK_S, IDLE_WORKERS

AUTH_TOKEN = "bench-auth-token"
TRIVIAL = "return [{'json': {'ok': True}}]"
STOP_TIMEOUT = 10.0  # seconds a runner gets to exit after SIGTERM
IDLE_TIMEOUT = 10.0  # seconds to wait for the worker pool to refill
SUBMIT_TIMEOUT = 60.0

# Targets from issue 15 (n8n's own runner: n8n-python-runner.md §10 and issue 15).
TARGET_P50_MS = 1.0
TARGET_TPUT_8 = 1000.0
TARGET_COLD_OFFER_MS = 90.0
TARGET_COLD_DONE_MS = 110.0
TARGET_10K_MS = 25.0
TARGET_IDLE_MB = 35.0
TARGET_PANDAS_MS = 15.0
IDLE_PAUSE = 1.0  # seconds of idle before each "after idle" task
CORES = os.cpu_count() or 1


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def settings(code: str, items: list[dict[str, Any]] | None = None, *,
             each: bool = False) -> dict[str, Any]:
    """Code-node settings as n8n sends them."""
    return {
        "code": code,
        "nodeMode": "runOnceForEachItem" if each else "runOnceForAllItems",
        "continueOnFail": False,
        "items": items or [],
        "workflowMode": "manual", "nodeName": "Python", "workflowName": "bench",
    }


def small_items(n: int) -> list[dict[str, Any]]:
    """``n`` small items, like a typical Code-node input."""
    return [{"json": {"id": i, "name": f"item {i}", "value": i * 1.5, "ok": i % 2 == 0},
             "pairedItem": {"item": i}} for i in range(n)]


def accept_to_done_ms(out: RequestOutcome) -> float:
    """Broker-side ``runner:taskaccepted`` -> outcome, in ms."""
    if out.status != "done" or out.accepted_at is None:
        raise RuntimeError(f"task {out.task_id} failed: {out.error!r}")
    return (out.done_at - out.accepted_at) * 1000


def runner_command() -> list[str]:
    """The ``taskbox`` console script next to this interpreter (as a launcher runs it)."""
    script = Path(sys.executable).parent / "taskbox"
    return [str(script)] if script.exists() else [sys.executable, "-m", "taskbox"]


# --------------------------------------------------------------------------- runner


@dataclass
class RunnerProcess:
    """One ``taskbox`` subprocess in its own session; its stderr goes to a file."""

    proc: subprocess.Popen[bytes]
    runner_id: str
    started_at: float
    stderr: IO[bytes]
    descendants: set[int] = field(default_factory=set)

    @classmethod
    def spawn(cls, broker: EmbeddedBroker, runner_id: str, concurrency: int,
              command: Sequence[str] = (), **extra: str) -> RunnerProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("N8N_", "TASKBOX_"))}
        env.update({
            "N8N_RUNNERS_TASK_BROKER_URI": broker.uri,
            "N8N_RUNNERS_GRANT_TOKEN": broker.mint_grant_token(),
            "N8N_RUNNERS_ID": runner_id,
            "N8N_RUNNERS_MAX_CONCURRENCY": str(concurrency),
            "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "warning",
            "N8N_RUNNERS_TASK_TIMEOUT": "60",
        })
        env.update(extra)
        # Closed by close(), after the runner has exited.
        stderr = tempfile.TemporaryFile(prefix=f"taskbox-{runner_id}-")  # noqa: SIM115
        started = time.monotonic()
        proc = subprocess.Popen(list(command) or runner_command(), env=env, stdin=subprocess.DEVNULL,
                                stdout=stderr, stderr=stderr, start_new_session=True)
        return cls(proc, runner_id, started, stderr)

    def tree(self) -> list[psutil.Process]:
        """The runner and every descendant alive now (remembered for ``stop``)."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.descendants.update(p.pid for p in procs[1:])
        return procs

    def stop(self) -> list[int]:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; returns pids of the tree still alive.

        Anything of the tree left after a grace period is killed by pid (psutil checks
        the process start time, so a recycled pid is never hit).
        """
        self.tree()
        known = []
        for pid in self.descendants:
            with contextlib.suppress(psutil.NoSuchProcess):  # exited since: nothing to stop
                known.append(psutil.Process(pid))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        _, alive = psutil.wait_procs(known, timeout=3.0)
        leftover = [p.pid for p in alive]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=3.0)
        return leftover

    def log_tail(self, lines: int = 20) -> str:
        self.stderr.seek(0)
        return "\n".join(self.stderr.read().decode(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        self.stderr.close()


async def wait_idle(runner: RunnerProcess, workers: int, timeout: float = IDLE_TIMEOUT) -> int:
    """Wait until the zygote holds ``workers`` ready workers; returns the count seen."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        count = len(runner.tree()) - 2  # minus the runner and the zygote
        if count == workers:
            return count
        await asyncio.sleep(0.05)
    return count


@dataclass(frozen=True)
class Memory:
    rss: int
    uss: int
    pss: int
    processes: int


def tree_memory(procs: Sequence[psutil.Process]) -> Memory:
    """Sum RSS, USS and PSS over ``procs`` (``/proc/<pid>/smaps_rollup``)."""
    rss = uss = pss = count = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss, uss, pss, count = rss + info.rss, uss + info.uss, pss + info.pss, count + 1
    return Memory(rss, uss, pss, count)


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    what: str
    measured: str
    target: str = ""
    ok: bool | None = None

    def cells(self) -> list[str]:
        verdict = "" if self.ok is None else ("pass" if self.ok else "**miss**")
        return [self.what, self.measured, self.target, verdict]


@dataclass
class Plan:
    latency_tasks: int
    warmup: int
    tput_tasks: int
    tput_rounds: int
    cold_starts: int
    big_runs: int
    pass_runs: int
    idle_tasks: int
    package_runs: int


FULL = Plan(latency_tasks=500, warmup=50, tput_tasks=1000, tput_rounds=3, cold_starts=5,
            big_runs=5, pass_runs=20, idle_tasks=5, package_runs=20)
QUICK = Plan(latency_tasks=150, warmup=20, tput_tasks=200, tput_rounds=1, cold_starts=3,
             big_runs=3, pass_runs=10, idle_tasks=3, package_runs=5)


def python_pass_ms(runs: int) -> float:
    """Median wall time of ``python -c pass`` (this interpreter), start to exit."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cpu_by_role(runner: RunnerProcess) -> dict[str, float]:
    """CPU seconds used so far by this process (the broker) and by the runner's tree.

    Workers are single-use: the zygote reaps them, so their CPU shows up in the zygote's
    ``children_*`` times; the workers still alive are added one by one.
    """
    own = os.times()
    cpu = {"broker": own.user + own.system, "runner": 0.0, "zygote": 0.0, "workers": 0.0}
    for proc in runner.tree():
        try:
            times = proc.cpu_times()
            parent = proc.ppid()
        except psutil.NoSuchProcess:
            continue
        if proc.pid == runner.proc.pid:
            cpu["runner"] += times.user + times.system
        elif parent == runner.proc.pid:
            cpu["zygote"] += times.user + times.system
            cpu["workers"] += times.children_user + times.children_system
        else:
            cpu["workers"] += times.user + times.system
    return cpu


@dataclass(frozen=True)
class Throughput:
    rate: float  # tasks/s
    cpu_ms: dict[str, float]  # CPU ms per task by role


async def throughput(broker: EmbeddedBroker, runner: RunnerProcess, tasks: int,
                     concurrency: int, sandboxed: bool = True) -> Throughput:
    """Tasks/s with ``concurrency`` submits in flight, ``tasks`` in total, and CPU per task."""
    todo = iter(range(tasks))
    failures: list[RequestOutcome] = []
    task = settings(TRIVIAL)

    async def client() -> None:
        for _ in todo:
            out = await broker.submit(task, timeout=SUBMIT_TIMEOUT)
            if out.status != "done":
                failures.append(out)

    before = cpu_by_role(runner)
    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    if sandboxed:  # replacement workers are part of the cost
        await wait_idle(runner, concurrency + 1)
    after = cpu_by_role(runner)
    if failures:
        raise RuntimeError(f"{len(failures)} task(s) failed, first: {failures[0].error!r}")
    return Throughput(tasks / elapsed,
                      {role: (after[role] - before[role]) * 1000 / tasks for role in before})


async def timed_task(broker: EmbeddedBroker, task: dict[str, Any], runs: int,
                     check: Callable[[Any], bool]) -> float:
    """Median accept -> done (ms) of ``runs`` runs of ``task``; ``check`` vets the result."""
    times = []
    for _ in range(runs):
        out = await broker.submit(task, timeout=SUBMIT_TIMEOUT)
        ms = accept_to_done_ms(out)
        if not check(out.result):
            raise RuntimeError(f"unexpected result from {task['code']!r}")
        times.append(ms)
    return statistics.median(times)


def _first_offer(runner_id: str) -> Callable[[tuple[float, str, str, dict[str, Any]]], bool]:
    def predicate(event: tuple[float, str, str, dict[str, Any]]) -> bool:
        return event[1] == runner_id and event[2] == "in" \
            and event[3].get("type") == "runner:taskoffer"
    return predicate


async def cold_start(broker: EmbeddedBroker, starts: int,
                     command: Sequence[str], tag: str) -> tuple[float, float]:
    """Median (ms) of process start -> first ``runner:taskoffer``, and -> first task done."""
    to_offer: list[float] = []
    to_done: list[float] = []
    for i in range(starts):
        runner = RunnerProcess.spawn(broker, f"bench-{tag}-cold-{i}", 5, command)
        try:
            event = await broker.wait_for_event(_first_offer(runner.runner_id), timeout=20.0)
            to_offer.append((event[0] - runner.started_at) * 1000)
            out = await broker.submit(settings(TRIVIAL), timeout=SUBMIT_TIMEOUT)
            accept_to_done_ms(out)
            to_done.append((out.done_at - runner.started_at) * 1000)
        except BaseException:
            log(f"runner {runner.runner_id} log tail:\n{runner.log_tail()}")
            raise
        finally:
            runner.stop()
            runner.close()
        await _wait_gone(broker, runner.runner_id)
        await asyncio.sleep(0.3)  # let the machine settle between starts
    return statistics.median(to_offer), statistics.median(to_done)


# hasattr is on n8n's builtins deny list, so probe by attribute access.
BINARY_PROBE = """\
try:
    ok = callable(_helpers.getBinaryDataBuffer)
except (NameError, AttributeError):
    ok = False
return [{'json': {'ok': ok}}]
"""
BINARY_TASK = """\
buf = _helpers.getBinaryDataBuffer(0, 'data')
return [{'json': {'size': len(buf)}}]
"""


async def binary_round_trip(broker: EmbeddedBroker, runs: int) -> Row:
    """10 MB through ``helpers.getBinaryDataBuffer`` (issue 6), if the sandbox has it."""
    what = "10 MB binary via `_helpers.getBinaryDataBuffer`, accept -> done"
    probe = await broker.submit(settings(BINARY_PROBE), timeout=SUBMIT_TIMEOUT)
    if probe.status != "done" or probe.result != [{"json": {"ok": True}}]:
        return Row(what, "n/a (helpers not available)")
    size = 10 * 1024 * 1024
    blob = base64.b64encode(os.urandom(size)).decode()
    item = {"json": {}, "binary": {"data": {"data": blob, "mimeType": "application/octet-stream",
                                            "fileName": "blob.bin"}}}
    task = settings(BINARY_TASK, [item])
    size_check = [{"json": {"size": size}}]
    # The control carries the same 14 MB of settings but makes no helper call, so the
    # difference is the RPC: broker -> runner -> worker as n8n Buffer JSON / raw frames.
    control = settings("return [{'json': {'size': len(_items[0]['binary']['data']['data'])}}]",
                       [item])
    times: list[float] = []
    control_times: list[float] = []
    for _ in range(runs):
        for this, into in ((task, times), (control, control_times)):
            out = await broker.submit(this, timeout=SUBMIT_TIMEOUT)
            if out.status != "done":
                return Row(what, f"error: {out.error!r}"[:120])
            if this is task and out.result != size_check:
                return Row(what, f"unexpected result {str(out.result)[:80]}")
            into.append(accept_to_done_ms(out))
    call, base = statistics.median(times), statistics.median(control_times)
    return Row(what, f"{call:.0f} ms (median of {runs}); the same task without the call "
                     f"{base:.0f} ms, so the call costs ~{call - base:.0f} ms")


# --------------------------------------------------------------------------- main

PANDAS_TASK = """\
import pandas as pd
df = pd.DataFrame([item['json'] for item in _items])
sums = df.groupby('ok')['value'].sum()
return [{'json': {'ok': bool(k), 'sum': float(v)}} for k, v in sums.items()]
"""
NUMPY_TASK = """\
import numpy as np
values = np.array([item['json']['value'] for item in _items])
return [{'json': {'mean': float(values.mean()), 'std': float(values.std())}}]
"""
PACKAGES_ENV = {"N8N_RUNNERS_EXTERNAL_ALLOW": "pandas,numpy"}


@dataclass
class Figures:
    """Every number one side (taskbox, or the in-process floor) produced in a run."""

    latencies: list[float] = field(default_factory=list)
    submit_latencies: list[float] = field(default_factory=list)
    after_idle: list[float] = field(default_factory=list)
    tputs: dict[int, Throughput] = field(default_factory=dict)
    cold_offer: float = math.nan
    cold_done: float = math.nan
    big_ms: float = math.nan
    each_ms: float = math.nan
    memory: Memory | None = None
    idle_workers: int = -1
    packages: dict[str, float] = field(default_factory=dict)  # name -> ms (or bytes)
    binary: Row | None = None
    data: dict[str, float] = field(default_factory=dict)  # bench/data_rows.py


async def _latency_rows(broker: EmbeddedBroker, runner: RunnerProcess, plan: Plan,
                        figures: Figures, sandboxed: bool) -> None:
    log(f"latency: {plan.latency_tasks} trivial tasks at concurrency 1 ...")
    for _ in range(plan.latency_tasks):
        out = await broker.submit(settings(TRIVIAL), timeout=SUBMIT_TIMEOUT)
        figures.latencies.append(accept_to_done_ms(out))
        figures.submit_latencies.append((out.done_at - out.submitted_at) * 1000)
    log("10,000-item and 1,000-item per-item tasks ...")
    big = settings("return _items", small_items(10_000))
    each = settings("_item['json']['double'] = _item['json']['id'] * 2\n"
                    "return _item", small_items(1_000), each=True)
    # The inputs are constants: out of the way of this process's collector, which
    # would walk their 55,000 objects again in every full collection it makes.
    gc.collect()
    gc.freeze()
    try:
        figures.big_ms = await timed_task(broker, big, plan.big_runs,
                                          lambda r: isinstance(r, list) and len(r) == 10_000)
        figures.each_ms = await timed_task(broker, each, plan.big_runs,
                                           lambda r: isinstance(r, list) and len(r) == 1_000)
    finally:
        gc.unfreeze()
    if sandboxed:
        log("binary helper probe ...")
        figures.binary = await binary_round_trip(broker, plan.big_runs)
        log("workflow data tasks (1,000 items) ...")
        figures.data = await _data_rows().measure(broker, plan.big_runs)


def _data_rows() -> Any:
    """bench/data_rows.py: the workflow-data rows (issue 14)."""
    import importlib

    return importlib.import_module("data_rows")


def packages_available() -> bool:
    """pandas and numpy importable by this interpreter (the runner's)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("pandas", "numpy"))


async def package_tasks(broker: EmbeddedBroker, plan: Plan, command: Sequence[str],
                        runner_id: str, figures: Figures) -> None:
    """pandas and numpy tasks with both allowlisted: first task, warm p50, idle PSS at 8."""
    items = small_items(1_000)
    tasks = {"pandas": (settings(PANDAS_TASK, items),
                        lambda r: isinstance(r, list) and len(r) == 2),
             "numpy": (settings(NUMPY_TASK, items),
                       lambda r: isinstance(r, list) and len(r) == 1)}
    runner = RunnerProcess.spawn(broker, runner_id, 8, command, **PACKAGES_ENV)
    try:
        await broker.wait_for_runners(1, timeout=30.0)
        for name, (task, check) in tasks.items():
            first = await timed_task(broker, task, 1, check)
            figures.packages[f"{name} first"] = first
            figures.packages[f"{name} warm"] = await timed_task(broker, task,
                                                                plan.package_runs, check)
        if command_is_taskbox(command):
            await asyncio.sleep(IDLE_SHRINK_S + 0.5)
            await wait_idle(runner, IDLE_WORKERS)
        await asyncio.sleep(0.5)
        figures.packages["pss"] = tree_memory(runner.tree()).pss
    except BaseException:
        log(f"runner {runner.runner_id} log tail:\n{runner.log_tail()}")
        raise
    finally:
        runner.stop()
        runner.close()
        with contextlib.suppress(TimeoutError):
            await _wait_gone(broker, runner.runner_id)


def floor_command() -> list[str]:
    """The floor runner: this interpreter running bench/floor_runner.py."""
    return [sys.executable, str(Path(__file__).with_name("floor_runner.py"))]


def command_is_taskbox(command: Sequence[str]) -> bool:
    return list(command) != floor_command()


async def measure(broker: EmbeddedBroker, plan: Plan, command: Sequence[str],
                  tag: str, notes: list[str]) -> Figures:
    """One side's figures: cold starts, latency, big tasks, throughput, idle memory."""
    sandboxed = command_is_taskbox(command)
    figures = Figures()
    log(f"[{tag}] cold starts ...")
    figures.cold_offer, figures.cold_done = await cold_start(broker, plan.cold_starts, command,
                                                             tag)
    for concurrency in (1, 4, 8):
        runner = RunnerProcess.spawn(broker, f"bench-{tag}-c{concurrency}", concurrency,
                                     command)
        try:
            await broker.wait_for_runners(1, timeout=20.0)
            await throughput(broker, runner, plan.warmup, concurrency, sandboxed)
            if concurrency == 1:
                await _latency_rows(broker, runner, plan, figures, sandboxed)
            rounds = []
            for _ in range(plan.tput_rounds):
                log(f"[{tag}] throughput: {plan.tput_tasks} tasks at concurrency "
                    f"{concurrency} ...")
                rounds.append(await throughput(broker, runner, plan.tput_tasks, concurrency,
                                               sandboxed))
            figures.tputs[concurrency] = Throughput(
                statistics.median(r.rate for r in rounds),
                {role: statistics.median(r.cpu_ms[role] for r in rounds)
                 for role in rounds[0].cpu_ms})
            if concurrency == 8:
                # Idle: the pool shrinks IDLE_SHRINK_S after the last task.
                await asyncio.sleep(IDLE_SHRINK_S + 0.5)
                if sandboxed:
                    figures.idle_workers = await wait_idle(runner, IDLE_WORKERS)
                await asyncio.sleep(0.5)
                figures.memory = tree_memory(runner.tree())
                log(f"[{tag}] latency after {IDLE_PAUSE:g} s idle, {plan.idle_tasks} "
                    "tasks ...")
                for _ in range(plan.idle_tasks):
                    await asyncio.sleep(IDLE_PAUSE)
                    out = await broker.submit(settings(TRIVIAL), timeout=SUBMIT_TIMEOUT)
                    figures.after_idle.append(accept_to_done_ms(out))
        except BaseException:
            log(f"runner {runner.runner_id} log tail:\n{runner.log_tail()}")
            raise
        finally:
            leftover = runner.stop()
            if leftover:
                notes.append(f"runner {runner.runner_id}: killed leftover pids {leftover}")
            runner.close()
            with contextlib.suppress(TimeoutError):
                await _wait_gone(broker, runner.runner_id)
    if plan.package_runs and packages_available():
        log(f"[{tag}] pandas and numpy tasks ...")
        await package_tasks(broker, plan, command, f"bench-{tag}-pkg", figures)
    return figures


def _ratio(value: float, floor: float) -> str:
    if not (math.isfinite(value) and math.isfinite(floor)) or floor <= 0:
        return ""
    return f"{value / floor:.2f}x"


class Table:
    """Rows of (what, taskbox, floor, taskbox / floor, target, result)."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def add(self, what: str, value: float, floor: float, unit: str, fmt: str = ".2f",
            target: float | None = None, higher_is_better: bool = False) -> None:
        def show(x: float) -> str:
            return f"{x:{fmt}} {unit}" if math.isfinite(x) else "n/a"
        verdict = ""
        shown_target = ""
        if target is not None:
            shown_target = f"{'>=' if higher_is_better else '<='} {target:g} {unit}"
            ok = value >= target if higher_is_better else value <= target
            verdict = "pass" if ok else "**miss**"
        self.rows.append([what, show(value), show(floor), _ratio(value, floor), shown_target,
                          verdict])

    def text(self, what: str, value: str, floor: str = "") -> None:
        self.rows.append([what, value, floor, "", "", ""])

    def render(self) -> str:
        header = ["what", "taskbox", "floor (in-process, no sandbox)", "taskbox / floor",
                  "target", "result"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        return "\n".join(lines)


def _cpu_text(cpu: dict[str, float]) -> str:
    tree = cpu["runner"] + cpu["zygote"] + cpu["workers"]
    total = tree + cpu["broker"]
    return (f"{cpu['runner']:.2f} / {cpu['zygote']:.2f} / {cpu['workers']:.2f} / "
            f"{cpu['broker']:.2f} ms ({CORES * 1000 / total:.0f} tasks/s; "
            f"{CORES * 1000 / tree:.0f}/s with the broker elsewhere)")


def build_table(tb: Figures, fl: Figures, plan: Plan, pass_ms: float) -> Table:
    table = Table()
    nan = math.nan

    def pct(values: Sequence[float], p: float) -> float:
        return percentile(values, p) if values else nan

    n = len(tb.latencies)
    table.add(f"trivial task, accept -> done, p50 (concurrency 1, n={n})",
              pct(tb.latencies, 50), pct(fl.latencies, 50), "ms", target=TARGET_P50_MS)
    table.add("trivial task, accept -> done, p95", pct(tb.latencies, 95),
              pct(fl.latencies, 95), "ms")
    table.add("trivial task, accept -> done, p99", pct(tb.latencies, 99),
              pct(fl.latencies, 99), "ms")
    table.add("trivial task, submit -> done, p50 (includes offer matching)",
              pct(tb.submit_latencies, 50), pct(fl.submit_latencies, 50), "ms")
    table.add(f"trivial task after {IDLE_PAUSE:g} s idle (concurrency 8, idle pool), "
              f"accept -> done, median of {plan.idle_tasks}", statistics.median(tb.after_idle) if tb.after_idle else nan,
              statistics.median(fl.after_idle) if fl.after_idle else nan, "ms",
              target=TARGET_P50_MS)
    rounds_note = f"median of {plan.tput_rounds} x {plan.tput_tasks}" \
        if plan.tput_rounds > 1 else f"{plan.tput_tasks} tasks"
    for concurrency, tput in tb.tputs.items():
        floor = fl.tputs.get(concurrency)
        table.add(f"throughput, concurrency {concurrency} ({rounds_note})", tput.rate,
                  floor.rate if floor else nan, "tasks/s", ".0f",
                  target=TARGET_TPUT_8 if concurrency == 8 else None, higher_is_better=True)
    for concurrency, tput in tb.tputs.items():
        floor = fl.tputs.get(concurrency)
        table.text(f"CPU per task at concurrency {concurrency}: runner / zygote / workers / "
                   f"broker+bench (ceiling on {CORES} idle cores)", _cpu_text(tput.cpu_ms),
                   _cpu_text(floor.cpu_ms) if floor else "")
    for concurrency, tput in tb.tputs.items():
        floor = fl.tputs.get(concurrency)
        table.add(f"CPU per task at concurrency {concurrency}, runner's whole tree",
                  sum(tput.cpu_ms[r] for r in ("runner", "zygote", "workers")),
                  sum(floor.cpu_ms[r] for r in ("runner", "zygote", "workers"))
                  if floor else nan, "ms")
    table.add(f"cold start: process start -> first `runner:taskoffer` "
              f"(median of {plan.cold_starts})", tb.cold_offer, fl.cold_offer, "ms", ".0f",
              target=TARGET_COLD_OFFER_MS)
    table.add("cold start: process start -> first trivial task done", tb.cold_done,
              fl.cold_done, "ms", ".0f", target=TARGET_COLD_DONE_MS)
    table.add(f"10,000-item all-items task (`return _items`), accept -> done "
              f"(median of {plan.big_runs})", tb.big_ms, fl.big_ms, "ms", ".1f",
              target=TARGET_10K_MS)
    table.add(f"1,000-item per-item task, accept -> done (median of {plan.big_runs})",
              tb.each_ms, fl.each_ms, "ms", ".1f")
    mib = 1024 * 1024
    if tb.memory is not None:
        fl_pss = fl.memory.pss / mib if fl.memory else nan
        table.add(f"idle memory at concurrency 8, PSS sum ({tb.memory.processes} processes: "
                  f"runner + zygote + {tb.idle_workers} ready workers)", tb.memory.pss / mib,
                  fl_pss, "MiB", ".1f", target=TARGET_IDLE_MB)
        table.text("idle memory at concurrency 8, USS sum / RSS sum",
                   f"{tb.memory.uss / mib:.1f} / {tb.memory.rss / mib:.1f} MiB",
                   f"{fl.memory.uss / mib:.1f} / {fl.memory.rss / mib:.1f} MiB"
                   if fl.memory else "")
    if tb.packages:
        for name in ("pandas", "numpy"):
            runs = plan.package_runs
            table.add(f"{name} task over 1,000 items ({name} allowlisted), first task",
                      tb.packages[f"{name} first"], fl.packages.get(f"{name} first", nan),
                      "ms", ".1f")
            table.add(f"{name} task over 1,000 items, warm, median of {runs}",
                      tb.packages[f"{name} warm"], fl.packages.get(f"{name} warm", nan),
                      "ms", ".1f", target=TARGET_PANDAS_MS if name == "pandas" else None)
        table.add("idle memory at concurrency 8 with pandas and numpy allowlisted, PSS sum",
                  tb.packages["pss"] / mib, fl.packages.get("pss", nan) / mib, "MiB", ".1f")
    else:
        table.text("pandas / numpy tasks", "n/a (pandas and numpy not installed)")
    p50 = pct(tb.latencies, 50)
    table.text(f"trivial p50 / `python -c pass` (median start+exit {pass_ms:.1f} ms, "
               f"n={plan.pass_runs})", f"{p50 / pass_ms:.3f}x")
    if tb.binary is not None:
        table.text(tb.binary.what, tb.binary.measured)
    if tb.data:
        _data_rows().add_rows(table, tb.data, plan.big_runs)
    return table


async def run(plan: Plan, command: Sequence[str] = (),
              with_floor: bool = True) -> tuple[Table, list[str]]:
    notes: list[str] = []
    log("python -c pass ...")
    pass_ms = python_pass_ms(plan.pass_runs)
    # No frame log (the bench only waits on frames as they come): kept, it holds every
    # 10,000-item result, and each full collection of this process walks them all,
    # inside the figures of both columns.
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH_TOKEN,
                            task_timeout=SUBMIT_TIMEOUT, rate_limit=None, events_limit=0)
    await broker.start()
    try:
        tb = await measure(broker, plan, command or runner_command(), "taskbox", notes)
        fl = await measure(broker, plan, floor_command(), "floor", notes) \
            if with_floor else Figures()
    finally:
        await broker.aclose()
    return build_table(tb, fl, plan, pass_ms), notes


async def _wait_gone(broker: EmbeddedBroker, runner_id: str) -> None:
    async with asyncio.timeout(5.0):
        while runner_id in broker.runner_ids:
            await asyncio.sleep(0.02)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller run of every row")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the in-process floor runner (halves the run time)")
    parser.add_argument("--runner-command", default="",
                        help="command line of the runner (default: the taskbox script), "
                             "to compare builds")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    started = time.monotonic()
    command = shlex.split(args.runner_command)
    table, notes = asyncio.run(run(plan, command, not args.no_floor))
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"taskbox bench{' --quick' if args.quick else ''}, {stamp}; "
          f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
          f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/"
          f"{load_after[2]:.2f}; run took {elapsed:.0f} s")
    if command:
        print(f"runner command: {shlex.join(command)}")
    print()
    print(table.render())
    for note in notes:
        print(f"\nnote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
