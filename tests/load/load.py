"""``make load`` (issue 7): many mixed tasks through real runners, then check nothing leaked.

The embedded broker runs in this process on loopback; ``--runners`` real ``taskbox``
subprocesses (runner -> zygote -> workers, each in its own session) connect to it with
``N8N_RUNNERS_MAX_CONCURRENCY=--runner-concurrency``. ``--tasks`` tasks are submitted
with ``--concurrency`` requests in flight, in a fixed mix (task ``i``):

=========  =====================================================  =====================
kind       what the code does                                     expected outcome
=========  =====================================================  =====================
trivial    returns one item carrying the task's own tag           done, that item
items1k    ``return _items`` on 1,000 items                       done, the 1,000 items
per_item   per-item mode on 20 items, doubles a field             done, 20 wrapped items
failing    ``raise ValueError('boom <tag>')``                     error "boom <tag>"
prints     50 ``print`` calls, then returns                       done, 50 prints in order
memory     appends 1 MiB bytearrays forever (limit 128 MiB)       error "memory limit"
timeout    ``while True: pass`` (task timeout 2 s)                error "timed out"
=========  =====================================================  =====================

Every ``--heavy-every``-th task (default 50) is a memory or timeout task; every
``--timeout-every``-th (default 250) is a timeout. Timeouts burn a core for the whole
task timeout, so they are kept to one heavy task in five: 40 in a 10,000-task run.

Invariants (any violation is listed and the exit status is 1):

* every task answered exactly once: one outcome per submit, outcome task ids unique,
  and in the broker's frame log exactly one ``runner:taskdone``/``runner:taskerror``
  per accepted task id (none for ids never accepted); no broker-made errors (lost
  tasks: disconnects, request timeouts);
* every outcome is the one its kind expects, with the task's own tag (a result
  delivered to the wrong request would show here);
* no leaked processes: after the run each runner tree is back to runner + zygote +
  the idle pool (``IDLE_WORKERS`` ready workers), with no zombie and the same zygote; after
  SIGTERM no process of the runner's session remains;
* no leaked fds: open fds of each tree at the end <= start + ``FD_SLACK``;
* memory growth < 10 % between the idle snapshots after warm-up and after the run,
  for the runner process's RSS and for the tree's PSS sum. The tree's RSS sum is shown
  but not gated: it counts the zygote's shared pages once per forked worker, so it
  moves with how many pages each worker happened to touch, not with leaks. PSS
  divides every shared page among the processes sharing it, so the tree's PSS sum is
  its real footprint; the runner process (long-lived, where a leak would accumulate)
  shares little, so its own RSS is a fair measure.

Run: ``make load`` or ``.venv/bin/python tests/load/load.py --tasks 10000
--concurrency 16 --runners 2``. ``tests/load/test_load.py`` runs a small version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from taskbox.broker import EmbeddedBroker, RequestOutcome
from taskbox.executor.pool import IDLE_WORKERS

__all__ = ["KINDS", "NORMAL_KINDS", "WRONG_OUTCOMES", "LoadReport", "Options", "main", "render",
           "run_load"]

AUTH_TOKEN = "load-auth-token"
KINDS = ("trivial", "items1k", "per_item", "failing", "prints", "memory", "timeout")
NORMAL_KINDS = KINDS[:5]
EXPECTED = {
    "trivial": "done, own item",
    "items1k": "done, 1,000 items",
    "per_item": "done, 20 items",
    "failing": 'error "boom <tag>"',
    "prints": "done, 50 prints",
    "memory": 'error "memory limit"',
    "timeout": 'error "timed out"',
}
PRINTS = 50
PER_ITEM = 20
BIG = 1_000
FD_SLACK = 4  # per tree: fds at the end may exceed the start by this much
GROWTH_LIMIT = 0.10
WRONG_OUTCOMES = "outcome(s) not as expected"  # the failure line for wrong outcomes
STOP_TIMEOUT = 10.0
IDLE_TIMEOUT = 15.0
EVENTS_LIMIT = 1_000_000  # the log is drained every DRAIN_INTERVAL; never near this
DRAIN_INTERVAL = 0.2


@dataclass(frozen=True)
class Options:
    """One load run. ``warmup`` None: ``min(300, max(200, tasks // 10))``.

    The runner's RSS climbs ~2 MiB over its first ~200 mixed tasks (allocator arenas
    for 1,000-item frames at full concurrency) and is flat after that, so the memory
    baseline is taken only after a warm-up at least that long.
    """

    tasks: int = 10_000
    concurrency: int = 16
    runners: int = 2
    runner_concurrency: int = 8
    heavy_every: int = 50
    timeout_every: int = 250
    warmup: int | None = None
    task_timeout: int = 2
    memory_limit_mb: int = 128
    deadline: float = 1800.0  # seconds for the whole run, start to stop
    log_level: str = "warning"  # the runners' N8N_RUNNERS_LAUNCHER_LOG_LEVEL
    keep_logs: str | None = None  # directory to copy the runners' logs into
    runner_command: tuple[str, ...] = ()  # default: the taskbox script next to python

    @property
    def warmup_tasks(self) -> int:
        return self.warmup if self.warmup is not None else min(300, max(200, self.tasks // 10))


def log(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


# --------------------------------------------------------------------------- tasks


def kind_of(index: int, opts: Options) -> str:
    """The kind of task ``index`` (0-based) in the fixed mix."""
    number = index + 1
    if opts.timeout_every and number % opts.timeout_every == 0:
        return "timeout"
    if opts.heavy_every and number % opts.heavy_every == 0:
        return "memory"
    return NORMAL_KINDS[index % len(NORMAL_KINDS)]


def task_settings(kind: str, tag: str) -> dict[str, Any]:
    """Code-node settings for one task of ``kind``; ``tag`` identifies the task."""
    each = False
    items: list[dict[str, Any]] = [{"json": {"tag": tag}}]
    if kind == "trivial":
        code = "return [{'json': {'ok': True, 'tag': _items[0]['json']['tag']}}]"
    elif kind == "items1k":
        code = "return _items"
        items = [{"json": {"tag": tag, "k": k, "name": f"item {k}"}} for k in range(BIG)]
    elif kind == "per_item":
        code = "return {'json': {'v': _item['json']['v'] * 2, 'tag': _item['json']['tag']}}"
        items = [{"json": {"tag": tag, "v": k}} for k in range(PER_ITEM)]
        each = True
    elif kind == "failing":
        code = "raise ValueError('boom ' + _items[0]['json']['tag'])"
    elif kind == "prints":
        code = (f"for k in range({PRINTS}):\n"
                "    print('line', k, _items[0]['json']['tag'])\n"
                f"return [{{'json': {{'printed': {PRINTS}}}}}]")
    elif kind == "memory":
        code = "xs = []\nwhile True:\n    xs.append(bytearray(1 << 20))"
    elif kind == "timeout":
        code = "while True:\n    pass"
    else:
        raise ValueError(f"unknown kind {kind!r}")
    for i, item in enumerate(items):
        item["pairedItem"] = {"item": i}
    return {
        "code": code,
        "nodeMode": "runOnceForEachItem" if each else "runOnceForAllItems",
        "continueOnFail": False,
        "items": items,
        "workflowMode": "manual", "nodeName": "Python", "workflowName": f"load {kind}",
    }


def _message(out: RequestOutcome) -> str:
    error = out.error
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(error)


def check(kind: str, tag: str, out: RequestOutcome) -> str | None:
    """None if ``out`` is what ``kind`` expects, else what was wrong."""
    if kind in ("failing", "memory", "timeout"):
        if out.status != "error":
            return f"expected an error, got {out.status}: {str(out.result)[:80]}"
        want = {"failing": f"boom {tag}", "memory": "memory limit",
                "timeout": "timed out"}[kind]
        message = _message(out)
        return None if want in message else f"error {message[:120]!r} lacks {want!r}"
    if out.status != "done":
        return f"expected done, got error {_message(out)[:120]!r}"
    result = out.result
    if kind == "trivial":
        ok = result == [{"json": {"ok": True, "tag": tag}}]
    elif kind == "items1k":
        ok = (isinstance(result, list) and len(result) == BIG
              and result[0] == {"json": {"tag": tag, "k": 0, "name": "item 0"},
                                "pairedItem": {"item": 0}}
              and result[-1]["json"]["k"] == BIG - 1)
    elif kind == "per_item":
        ok = result == [{"json": {"v": 2 * k, "tag": tag}, "pairedItem": {"item": k}}
                        for k in range(PER_ITEM)]
    else:  # prints
        printed = [["'line'", str(k), repr(tag)] for k in range(PRINTS)]
        if out.prints != printed:
            return f"prints: got {len(out.prints)}, first {out.prints[:1]!r}"
        ok = result == [{"json": {"printed": PRINTS}}]
    return None if ok else f"unexpected result {str(result)[:120]}"


@dataclass(frozen=True, slots=True)
class Record:
    index: int
    kind: str
    problem: str | None
    status: str
    task_id: str
    runner_id: str | None
    accept_ms: float  # NaN when the task was never accepted
    total_ms: float


# --------------------------------------------------------------------------- runners


@dataclass(frozen=True)
class TreeSnapshot:
    """One runner's process tree at one moment (idle)."""

    processes: int
    workers: int
    zombies: int
    zygote_pid: int | None
    rss: int
    pss: int
    uss: int
    fds: int
    runner_rss: int
    runner_uss: int


@dataclass
class RunnerProcess:
    """One ``taskbox`` subprocess in its own session (so its sid finds every descendant)."""

    proc: subprocess.Popen[bytes]
    runner_id: str
    concurrency: int
    stderr: IO[bytes]

    @classmethod
    def spawn(cls, broker: EmbeddedBroker, runner_id: str, opts: Options) -> RunnerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "TASKBOX_"))}
        env.update({
            "N8N_RUNNERS_TASK_BROKER_URI": broker.uri,
            "N8N_RUNNERS_GRANT_TOKEN": broker.mint_grant_token(),
            "N8N_RUNNERS_ID": runner_id,
            "N8N_RUNNERS_MAX_CONCURRENCY": str(opts.runner_concurrency),
            "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": opts.log_level,
            "N8N_RUNNERS_TASK_TIMEOUT": str(opts.task_timeout),
            "TASKBOX_MEMORY_LIMIT_MB": str(opts.memory_limit_mb),
        })
        script = Path(sys.executable).parent / "taskbox"
        command = list(opts.runner_command) or (
            [str(script)] if script.exists() else [sys.executable, "-m", "taskbox"])
        # Closed by close(), after the runner has exited.
        stderr = tempfile.TemporaryFile(prefix=f"taskbox-{runner_id}-")  # noqa: SIM115
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=stderr,
                                stderr=stderr, start_new_session=True)
        return cls(proc, runner_id, opts.runner_concurrency, stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def snapshot(self) -> TreeSnapshot:
        procs = self.tree()
        rss = pss = uss = fds = zombies = 0
        runner_rss = runner_uss = 0
        zygote: int | None = None
        for proc in procs:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    zombies += 1
                    continue
                info = proc.memory_full_info()
                fds += proc.num_fds()
                if proc.pid == self.pid:
                    runner_rss, runner_uss = info.rss, info.uss
                elif proc.ppid() == self.pid:
                    zygote = proc.pid
            except psutil.NoSuchProcess:
                continue
            rss, pss, uss = rss + info.rss, pss + info.pss, uss + info.uss
        return TreeSnapshot(len(procs), max(len(procs) - 2, 0), zombies, zygote, rss, pss, uss,
                            fds, runner_rss, runner_uss)

    def session(self) -> list[int]:
        """Pids (other than the runner) still in the runner's session."""
        found = []
        for pid in psutil.pids():
            with contextlib.suppress(OSError):
                if pid != self.pid and os.getsid(pid) == self.pid:
                    found.append(pid)
        return found

    def stop(self) -> int | None:
        """SIGTERM; SIGKILL to the process group after ``STOP_TIMEOUT``. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(STOP_TIMEOUT)
        return self.proc.returncode

    def leftovers(self, grace: float = 5.0) -> list[str]:
        """Processes of the session still there ``grace`` s after the runner exited.

        Describes them, then SIGKILLs them (they are ours: the session is the runner's).
        """
        deadline = time.monotonic() + grace
        pids = self.session()
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = self.session()
        described = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                described.append(f"{pid} ({proc.status()}: {' '.join(proc.cmdline())[:60]})")
                proc.kill()
        return described

    def log_tail(self, lines: int = 15) -> str:
        self.stderr.seek(0)
        return "\n".join(self.stderr.read().decode(errors="replace").splitlines()[-lines:])

    def save_log(self, directory: str) -> Path:
        path = Path(directory) / f"{self.runner_id}.log"
        self.stderr.seek(0)
        path.write_bytes(self.stderr.read())
        return path

    def close(self) -> None:
        self.stderr.close()


async def wait_idle(runners: Sequence[RunnerProcess], timeout: float = IDLE_TIMEOUT) -> bool:
    """Wait until every tree is runner + zygote + the idle pool of ready workers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(r.tree()) == IDLE_WORKERS + 2 for r in runners):
            return True
        await asyncio.sleep(0.05)
    return False


# --------------------------------------------------------------------------- audit


@dataclass
class FrameAudit:
    """Counts, from the broker's frame log, accepts and results per task id."""

    accepted: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    frames: int = 0
    overflow: bool = False

    def drain(self, broker: EmbeddedBroker) -> None:
        events = broker.events  # a copy; no await between it and the clear
        broker.clear_events()
        if len(events) >= EVENTS_LIMIT:
            self.overflow = True
        self.frames += len(events)
        for _, _, direction, message in events:
            if direction != "in":
                continue
            kind = message.get("type")
            if kind == "runner:taskaccepted":
                self.accepted[message["taskId"]] += 1
            elif kind in ("runner:taskdone", "runner:taskerror"):
                self.finished[message["taskId"]] += 1
            elif kind == "runner:taskrejected":
                self.rejected += 1


async def _drain_forever(audit: FrameAudit, broker: EmbeddedBroker) -> None:
    while True:
        await asyncio.sleep(DRAIN_INTERVAL)
        audit.drain(broker)


# --------------------------------------------------------------------------- run


@dataclass
class LoadReport:
    opts: Options
    records: list[Record]
    elapsed: float
    start: dict[str, TreeSnapshot]
    end: dict[str, TreeSnapshot]
    audit: FrameAudit
    failures: list[str]
    notes: list[str]
    lost: int = 0
    duplicated: int = 0
    timeline: dict[str, list[int]] = field(default_factory=dict)  # runner RSS each 10 %

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def tasks_per_second(self) -> float:
        return len(self.records) / self.elapsed if self.elapsed > 0 else math.nan


async def _submit_all(broker: EmbeddedBroker, indices: Iterator[int], concurrency: int,
                      opts: Options, task_timeout: float,
                      on_record: Callable[[int], None] | None = None) -> list[Record]:
    """Submit every index with ``concurrency`` requests in flight; ``on_record(count)``
    is called after each answer."""
    records: list[Record] = []

    async def client() -> None:
        for index in indices:
            kind = kind_of(index, opts)
            tag = f"t{index}"
            out = await broker.submit(task_settings(kind, tag), timeout=task_timeout)
            accept_ms = ((out.done_at - out.accepted_at) * 1000 if out.accepted_at is not None
                         else math.nan)
            records.append(Record(index, kind, check(kind, tag, out), out.status, out.task_id,
                                  out.runner_id, accept_ms,
                                  (out.done_at - out.submitted_at) * 1000))
            if on_record is not None:
                on_record(len(records))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return records


def _check_answers(report: LoadReport, records: Sequence[Record]) -> None:
    audit = report.audit
    failures = report.failures
    if audit.overflow:
        failures.append("the broker's frame log overflowed between drains; audit incomplete")
    ids = Counter(r.task_id for r in records)
    dup_outcomes = sorted(t for t, n in ids.items() if n > 1 or not t)
    never_accepted = [r for r in records if r.task_id not in audit.accepted]
    not_once = sorted(t for t in audit.accepted if audit.finished[t] != 1)
    double_accept = sorted(t for t, n in audit.accepted.items() if n > 1)
    stray = sorted(t for t in audit.finished if t not in audit.accepted)
    unanswered = sorted(set(audit.accepted) - set(ids))
    report.lost = len(never_accepted) + sum(1 for t in audit.accepted if audit.finished[t] == 0)
    report.duplicated = (sum(n - 1 for n in ids.values() if n > 1)
                         + sum(audit.finished[t] - 1 for t in audit.accepted
                               if audit.finished[t] > 1))
    if dup_outcomes:
        failures.append(f"{len(dup_outcomes)} task id(s) answered more than one submit: "
                        f"{dup_outcomes[:5]}")
    if never_accepted:
        sample = [(r.index, r.kind, r.status) for r in never_accepted[:5]]
        failures.append(f"{len(never_accepted)} task(s) answered without a runner accepting "
                        f"them (lost: broker-made outcome): {sample}")
    if not_once:
        counts = [(t, audit.finished[t]) for t in not_once[:5]]
        failures.append(f"{len(not_once)} accepted task(s) without exactly one "
                        f"taskdone/taskerror: {counts}")
    if double_accept:
        failures.append(f"{len(double_accept)} task id(s) accepted twice: {double_accept[:5]}")
    if stray:
        failures.append(f"{len(stray)} taskdone/taskerror for ids never accepted: {stray[:5]}")
    if unanswered:
        failures.append(f"{len(unanswered)} accepted task(s) that no submit got: "
                        f"{unanswered[:5]}")


def _check_trees(report: LoadReport, runners: Sequence[RunnerProcess]) -> None:
    failures = report.failures
    for runner in runners:
        rid = runner.runner_id
        start, end = report.start[rid], report.end[rid]
        if end.workers != IDLE_WORKERS or end.zombies:
            failures.append(f"{rid}: {end.processes} processes after the run "
                            f"({end.zombies} zombie), expected runner + zygote + "
                            f"{IDLE_WORKERS} ready worker(s), the idle pool")
        if end.zygote_pid != start.zygote_pid:
            failures.append(f"{rid}: zygote replaced during the run "
                            f"({start.zygote_pid} -> {end.zygote_pid})")
        if end.fds > start.fds + FD_SLACK:
            failures.append(f"{rid}: open fds grew from {start.fds} to {end.fds} "
                            f"(slack {FD_SLACK})")
        for what, before, after in (("runner RSS", start.runner_rss, end.runner_rss),
                                    ("tree PSS sum", start.pss, end.pss)):
            if before and (after - before) / before >= GROWTH_LIMIT:
                failures.append(f"{rid}: {what} grew {100 * (after - before) / before:.1f} % "
                                f"({before / 2**20:.1f} -> {after / 2**20:.1f} MiB)")


def _check_outcomes(report: LoadReport, records: Sequence[Record]) -> None:
    wrong = [r for r in records if r.problem is not None]
    if wrong:
        by_kind = Counter(r.kind for r in wrong)
        sample = "; ".join(f"#{r.index} {r.kind}: {r.problem}" for r in wrong[:5])
        report.failures.append(f"{len(wrong)} {WRONG_OUTCOMES} {dict(by_kind)}: {sample}")


async def run_load(opts: Options) -> LoadReport:
    """Start the broker and runners, warm up, run, audit, stop; never raises for a finding."""
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=AUTH_TOKEN,
                            task_timeout=max(30.0, opts.task_timeout * 5.0), rate_limit=None,
                            events_limit=EVENTS_LIMIT)
    await broker.start()
    runners: list[RunnerProcess] = []
    audit = FrameAudit()
    report = LoadReport(opts, [], math.nan, {}, {}, audit, [], [])
    drainer: asyncio.Task[None] | None = None
    task_timeout = max(30.0, opts.task_timeout * 5.0)
    try:
        async with asyncio.timeout(opts.deadline):
            for n in range(opts.runners):
                runners.append(RunnerProcess.spawn(broker, f"load-runner-{n}", opts))
            await broker.wait_for_runners(opts.runners, timeout=30.0)
            drainer = asyncio.create_task(_drain_forever(audit, broker))

            warm = opts.warmup_tasks
            log(f"warm-up: {warm} tasks ...")
            # Warm-up tasks use indices past the run's, so their tags never collide.
            warm_opts = Options(heavy_every=opts.heavy_every, timeout_every=0)
            warm_records = await _submit_all(
                broker, iter(range(opts.tasks, opts.tasks + warm)), opts.concurrency,
                warm_opts, task_timeout)
            _check_outcomes(report, warm_records)
            if not await wait_idle(runners):
                report.failures.append("runner trees did not return to idle after warm-up")
            await asyncio.sleep(0.5)
            report.start = {r.runner_id: r.snapshot() for r in runners}

            log(f"run: {opts.tasks} tasks at concurrency {opts.concurrency} on "
                f"{opts.runners} runner(s) x {opts.runner_concurrency} ...")
            started = time.monotonic()
            step = max(1, opts.tasks // 10)

            def sample(count: int) -> None:
                if count % step == 0:
                    for runner in runners:
                        with contextlib.suppress(psutil.Error):
                            rss = psutil.Process(runner.pid).memory_info().rss
                            report.timeline.setdefault(runner.runner_id, []).append(rss)

            records = await _submit_all(broker, iter(range(opts.tasks)), opts.concurrency,
                                        opts, task_timeout, sample)
            report.elapsed = time.monotonic() - started
            report.records = sorted(records, key=lambda r: r.index)
            log(f"run took {report.elapsed:.1f} s; waiting for idle ...")

            if not await wait_idle(runners):
                report.notes.append("runner trees were not idle within "
                                    f"{IDLE_TIMEOUT:g} s after the run")
            await asyncio.sleep(0.5)
            report.end = {r.runner_id: r.snapshot() for r in runners}
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
            audit.drain(broker)
            _check_outcomes(report, report.records)
            _check_answers(report, [*warm_records, *report.records])
            _check_trees(report, runners)
    except TimeoutError:
        report.failures.append(f"the run did not finish within {opts.deadline:g} s")
    finally:
        if drainer is not None:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
        for runner in runners:
            code = runner.stop()
            if code not in (0, None):
                report.notes.append(f"{runner.runner_id} exited with {code}")
            left = runner.leftovers()
            if left:
                report.failures.append(f"{runner.runner_id}: processes left after stop: {left}")
            if opts.keep_logs:
                log(f"{runner.runner_id} log: {runner.save_log(opts.keep_logs)}")
            elif report.failures:
                log(f"{runner.runner_id} log tail:\n{runner.log_tail()}")
            runner.close()
        await broker.aclose()
    return report


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f}"


def _growth(before: int, after: int) -> str:
    return f"{100 * (after - before) / before:+.1f} %" if before else "-"


def render(report: LoadReport) -> str:
    """The report as markdown tables."""
    opts = report.opts
    records = report.records
    accept = [r.accept_ms for r in records if not math.isnan(r.accept_ms)]
    total = [r.total_ms for r in records]
    normal = [r.accept_ms for r in records
              if r.kind in NORMAL_KINDS and not math.isnan(r.accept_ms)]
    lines = [
        f"load: {len(records)} tasks, concurrency {opts.concurrency}, {opts.runners} runner(s) "
        f"x {opts.runner_concurrency} slots, task timeout {opts.task_timeout} s, memory limit "
        f"{opts.memory_limit_mb} MiB, warm-up {opts.warmup_tasks} tasks",
        "",
        "| metric | value |",
        "|---|---|",
        f"| throughput | {report.tasks_per_second:.0f} tasks/s ({report.elapsed:.1f} s) |",
        f"| accept -> done p50 / p99, all tasks | {_ms(percentile(accept, 50))} / "
        f"{_ms(percentile(accept, 99))} ms |",
        f"| accept -> done p50 / p99, without memory/timeout tasks | "
        f"{_ms(percentile(normal, 50))} / {_ms(percentile(normal, 99))} ms |",
        f"| submit -> done p50 / p99, all tasks | {_ms(percentile(total, 50))} / "
        f"{_ms(percentile(total, 99))} ms |",
        f"| lost / duplicated answers | {report.lost} / {report.duplicated} |",
        f"| frames audited / offers rejected by runners | {report.audit.frames} / "
        f"{report.audit.rejected} |",
        "",
        "| kind | expected | tasks | as expected | wrong | accept -> done p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        mine = [r for r in records if r.kind == kind]
        if not mine:
            continue
        good = sum(1 for r in mine if r.problem is None)
        times = [r.accept_ms for r in mine if not math.isnan(r.accept_ms)]
        lines.append(f"| {kind} | {EXPECTED[kind]} | {len(mine)} | {good} | {len(mine) - good} "
                     f"| {_ms(percentile(times, 50))} / {_ms(percentile(times, 99))} |")
    lines += [
        "",
        "| runner tree | processes start / end | RSS sum MiB | PSS sum MiB (growth) "
        "| USS sum MiB | runner RSS MiB (growth) | open fds |",
        "|---|---|---|---|---|---|---|",
    ]
    for rid, start in report.start.items():
        end = report.end.get(rid)
        if end is None:
            continue
        lines.append(
            f"| {rid} | {start.processes} / {end.processes} | {_mib(start.rss)} -> "
            f"{_mib(end.rss)} | {_mib(start.pss)} -> {_mib(end.pss)} "
            f"({_growth(start.pss, end.pss)}) | {_mib(start.uss)} -> {_mib(end.uss)} | "
            f"{_mib(start.runner_rss)} -> {_mib(end.runner_rss)} "
            f"({_growth(start.runner_rss, end.runner_rss)}) | {start.fds} -> {end.fds} |")
    for rid, series in report.timeline.items():
        lines.append(f"\nrunner RSS of {rid} while busy, every 10 % of the run (MiB): "
                     + " ".join(_mib(v) for v in series))
    lines.append("")
    if report.failures:
        lines.append(f"FAILED: {len(report.failures)} invariant(s) violated")
        lines.extend(f"- {failure}" for failure in report.failures)
    else:
        lines.append("all invariants held: every task answered exactly once and as expected; "
                     "no leaked processes or fds; memory growth under "
                     f"{GROWTH_LIMIT:.0%}")
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description="taskbox load test (issue 7)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="submits in flight")
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--runner-concurrency", type=int, default=8,
                        help="N8N_RUNNERS_MAX_CONCURRENCY of each runner")
    parser.add_argument("--heavy-every", type=int, default=50,
                        help="every Nth task is a memory or timeout task (0: none)")
    parser.add_argument("--timeout-every", type=int, default=250,
                        help="every Nth task is a timeout task (0: none)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--deadline", type=float, default=1800.0,
                        help="seconds for the whole run")
    parser.add_argument("--log-level", default="warning", help="the runners' log level")
    parser.add_argument("--keep-logs", metavar="DIR", help="save the runners' logs in DIR")
    parser.add_argument("--runner-command", default="",
                        help="command line of a runner (default: the taskbox script)")
    args = parser.parse_args(argv)
    for name in ("tasks", "concurrency", "runners", "runner_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return Options(tasks=args.tasks, concurrency=args.concurrency, runners=args.runners,
                   runner_concurrency=args.runner_concurrency, heavy_every=args.heavy_every,
                   timeout_every=args.timeout_every, warmup=args.warmup,
                   deadline=args.deadline, log_level=args.log_level,
                   keep_logs=args.keep_logs,
                   runner_command=tuple(shlex.split(args.runner_command)))


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    load = os.getloadavg()
    log(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"({os.cpu_count()} cores)")
    report = asyncio.run(run_load(opts))
    load = os.getloadavg()
    print(render(report))
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({os.cpu_count()} cores)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
