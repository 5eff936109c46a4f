"""taskbox in n8n's queue mode: real Redis, real Postgres, one main, two workers, a taskbox
runner beside each worker; load, then faults under load.  ``make e2e-queue``.

    python -m e2e.queue.run [--requests 1000] [--concurrency 32] [--keep]

Progress goes to stderr; the tables and one ``PASS|FAIL <check>`` line per check to
stdout, last ``N passed, M failed`` over the fixed list ``CHECKS``. Exit 0 only if all
passed. Every process is stopped by pid on every exit path (also on the watchdog and
Ctrl-C). See e2e/queue/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.queue import workflow as wf
from e2e.queue.load import Load, Result, percentile
from e2e.queue.stack import (
    RUNNER_UID,
    Proc,
    Stack,
    StackError,
    count_in_log,
    cpu_seconds,
    free_port,
    http_get,
    in_flight,
    log,
    metrics,
    nonroot_runner,
    proc_status,
    tail,
    tasks_all,
    tasks_ok,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
WARMUP = 999_999  # the request index of the warm-up probe
INSTALL_LOG = Path("/tmp/n8n-install.log")

#: The fixed list of checks: the last line counts exactly these.
CHECKS = {
    "stack": "redis, postgres, n8n main + 2 workers up; each taskbox registered with its "
             "own worker's broker",
    "runner-nonroot": f"each taskbox runs as uid {RUNNER_UID} with no capabilities and "
                      "no_new_privs (as the k8s sidecar) and reports rlimits, prctl, "
                      "landlock and seccomp active",
    "hostnames": "every n8n process has its own host name (UTS namespace), and none "
                 "logged 'sharing the same hostId'",
    "load-answers": "every load request answered 200 with the right result",
    "load-spread": "both workers' runners ran tasks (each >= 20% of them)",
    "load-accounting": "runners' /metrics count exactly N ok tasks; n8n stored N successes",
    "kill-restart": "SIGKILLed runner restarted after 2 s and re-registered",
    "kill-bounded": "only requests in flight at the kill failed, at most the runner's "
                    "concurrency",
    "kill-recorded": "n8n recorded each of those as an error execution 'Node execution "
                     "failed' (runner disconnected)",
    "after-restart": "every request started after the re-registration succeeded",
    "other-worker-served": "after one runner stopped for good, the other worker kept "
                           "serving (its runner's count grew, its requests succeeded)",
    "stopped-recorded": "the graceful stop (SIGTERM) failed no task; what failed after it "
                        "is the runnerless worker's jobs, each stored by n8n as 'Task "
                        "request timed out'",
    "after-recovery": "once the runnerless worker was stopped, every request succeeded",
    "db-accounting": "one execution per request in Postgres; success exactly where the "
                     "HTTP answer was right",
    "cleanup": "every process the run started is gone",
}


class Watchdog(BaseException):
    """Raised in the main thread by SIGALRM/SIGTERM/SIGINT; unwinds to the cleanup."""


@dataclass
class Checks:
    results: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def record(self, name: str, ok: bool, detail: str = "") -> None:
        assert name in CHECKS, name
        self.results[name] = (ok, detail)
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)

    def finish(self, reason: str) -> tuple[int, int]:
        for name in CHECKS:
            if name not in self.results:
                self.record(name, False, f"not reached ({reason})")
        passed = sum(1 for ok, _ in self.results.values() if ok)
        return passed, len(CHECKS) - passed


# --------------------------------------------------------------------------- set-up


def ensure_packages() -> None:
    """Debian's redis-server and postgresql, installed when missing (before the netns)."""
    have_pg = any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if shutil.which("redis-server") and have_pg:
        return
    log("installing redis-server postgresql from Debian's packages (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server",
               "postgresql"]
    for attempt in range(2):
        done = subprocess.run(install, env=env, timeout=600, check=False,
                              stdout=subprocess.DEVNULL)
        if done.returncode == 0:
            return
        if attempt == 0:  # a fresh machine's package lists may be missing or stale
            subprocess.run(["apt-get", "update"], env=env, timeout=600, check=False,
                           stdout=subprocess.DEVNULL)
    raise SystemExit("apt-get install -y redis-server postgresql failed")


def reexec_in_netns(args: argparse.Namespace) -> None:
    """Run everything in a fresh network namespace with only loopback (like n8n-e2e)."""
    if os.environ.get("TB_QUEUE_IN_NETNS") or args.netns == "0":
        return
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode == 0 and shutil.which("ip"):
        env = dict(os.environ, TB_QUEUE_IN_NETNS="1")
        argv = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                sys.executable, "-m", "e2e.queue.run", *sys.argv[1:]]
        os.chdir(ROOT)
        os.execvpe("unshare", argv, env)
    if args.netns == "1":
        raise SystemExit("--netns 1 but 'unshare -n' is not permitted here")
    log("unshare -n not permitted: host network namespace (all listeners on 127.0.0.1)")


def wait_install(timeout: float) -> None:
    """The coordinator's install.sh run ends its log with rc=0."""
    if not INSTALL_LOG.exists():
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = INSTALL_LOG.read_text(errors="replace").strip().splitlines()
        last = lines[-1] if lines else ""
        if last.startswith("rc="):
            if last != "rc=0":
                raise SystemExit(f"{INSTALL_LOG} ends with {last}: run install.sh again")
            return
        time.sleep(5)
    raise SystemExit(f"{INSTALL_LOG} did not reach rc=0 within {timeout:.0f} s")


@dataclass
class Deployment:
    stack: Stack
    main_port: int
    worker_ports: list[int]  # QUEUE_HEALTH_CHECK_PORT
    broker_ports: list[int]
    health_ports: list[int]  # taskbox /healthz + /metrics
    workers: list[Proc]
    runners: list[Proc]
    runner_argv: list[str]
    runner_concurrency: int


def start_deployment(stack: Stack, args: argparse.Namespace) -> Deployment:
    stack.start_redis()
    stack.start_postgres()
    main_port = free_port()
    worker_ports = [free_port(), free_port()]
    broker_ports = [free_port(), free_port()]
    health_ports = [free_port(), free_port()]

    # Import (this also runs n8n's migrations on the fresh database). `active: true`
    # with --activeState=fromJson publishes it; that flag exists for queue mode only.
    wfdir = stack.work / "workflows"
    wfdir.mkdir()
    (wfdir / "queue.json").write_text(json.dumps(wf.workflow()))
    t = time.monotonic()
    stack.n8n_cli("n8n-import", ["import:workflow", "--separate", f"--input={wfdir}"],
                  stack.n8n_env("cli"), 240)
    # Publishing = what `n8n publish:workflow --id=X` does to the database (as
    # ../shared/n8n-e2e/lib/publish.py for SQLite); main registers the webhook at start.
    # (`import --activeState=fromJson` is refused without an owner user.)
    published = stack.psql(
        'update workflow_entity w set active = true, "activeVersionId" = w."versionId", '
        f"\"updatedAt\" = now() where w.id = '{wf.WORKFLOW_ID}' and not w.\"isArchived\" "
        'and exists (select 1 from workflow_history h where h."versionId" = w."versionId" '
        'and h."workflowId" = w.id) returning w.id')
    if published != wf.WORKFLOW_ID:
        raise StackError(f"could not publish workflow {wf.WORKFLOW_ID} (got {published!r})")
    log(f"migrated the database, imported and published the workflow in "
        f"{time.monotonic() - t:.1f}s")

    base = f"http://127.0.0.1:{main_port}"
    main = stack.start_n8n("n8n-main", "tb16-main", ["start"], stack.n8n_env("main", {
        "N8N_HOST": "127.0.0.1", "N8N_LISTEN_ADDRESS": "127.0.0.1", "N8N_PORT": str(main_port),
        "N8N_PROTOCOL": "http", "N8N_WEBHOOK_URL": f"{base}/",
        "N8N_RUNNERS_BROKER_PORT": str(free_port()),  # unused: main runs no broker here
    }))
    workers = []
    for k in range(2):
        workers.append(stack.start_n8n(
            f"n8n-worker{k + 1}", f"tb16-worker{k + 1}",
            ["worker", f"--concurrency={args.worker_concurrency}"],
            stack.n8n_env(f"worker{k + 1}", {
                "N8N_RUNNERS_BROKER_PORT": str(broker_ports[k]),
                "N8N_RUNNERS_TASK_REQUEST_TIMEOUT": str(args.task_request_timeout),
                "N8N_GRACEFUL_SHUTDOWN_TIMEOUT": str(args.task_request_timeout + 12),
                "QUEUE_HEALTH_CHECK_ACTIVE": "true",
                "QUEUE_HEALTH_CHECK_PORT": str(worker_ports[k]),
                "N8N_WORKER_SERVER_ADDRESS": "127.0.0.1",
            })))
    t = time.monotonic()
    wait_for("n8n main", lambda: http_get(f"{base}/healthz/readiness")[0] == 200, 180,
             main.alive, main.logfile)
    for k, w in enumerate(workers):
        def worker_ready(k: int = k) -> bool:
            return (http_get(f"http://127.0.0.1:{worker_ports[k]}/healthz/readiness")[0] == 200
                    and http_get(f"http://127.0.0.1:{broker_ports[k]}/healthz")[0] == 200)
        wait_for(f"n8n worker{k + 1}", worker_ready, 180, w.alive, w.logfile)
    log(f"n8n main (pid {main.pid}, port {main_port}) and 2 workers (pids "
        f"{workers[0].pid}, {workers[1].pid}; brokers {broker_ports}) ready in "
        f"{time.monotonic() - t:.1f}s")

    runner_argv = (shlex.split(args.runner_cmd) if args.runner_cmd
                   else json.loads(os.environ.get("TB_QUEUE_RUNNER_ARGV", "[]")))
    if not runner_argv:
        raise StackError("no runner command")
    dep = Deployment(stack, main_port, worker_ports, broker_ports, health_ports, workers, [],
                     runner_argv, args.runner_concurrency)
    for k in range(2):
        dep.runners.append(start_runner(dep, k))
    for k in range(2):
        wait_registered(dep, k, 1)
    log("both taskbox runners registered, each with its own worker's broker")

    # n8n serves HTTP before its publication service has registered the webhook: one
    # real request (index WARMUP, left out of every count) until it is answered right.
    probe = Load(main_port, wf.WEBHOOK_PATH, wf.request_body, wf.expected, timeout=30)
    t = time.monotonic()
    while True:
        result = probe.run(WARMUP, 1, 1, time.monotonic() + 30)
        if result and result[0].ok:
            break
        if time.monotonic() - t > 90 or not main.alive():
            raise StackError("the webhook never answered right: "
                             + (f"{result[0].status} {result[0].detail}" if result else "-")
                             + tail(main.logfile))
        time.sleep(1)
    log(f"webhook answers through the queue ({time.monotonic() - t:.1f}s)")
    return dep


def start_runner(dep: Deployment, k: int) -> Proc:
    return dep.stack.start_runner(f"taskbox{k + 1}", dep.runner_argv, dep.broker_ports[k],
                                  dep.health_ports[k], dep.runner_concurrency)


def registrations(dep: Deployment, k: int) -> int:
    return count_in_log(dep.workers[k].logfile, "Registered runner")


def wait_registered(dep: Deployment, k: int, count: int, timeout: float = 60) -> float:
    runner = dep.runners[k]
    return wait_for(f"taskbox{k + 1} registration with worker{k + 1}",
                    lambda: registrations(dep, k) >= count, timeout, runner.alive,
                    runner.logfile)


# --------------------------------------------------------------------------- phases


def fire(load: Load, first: int, limit: int, concurrency: int, seconds: float,
         stop: threading.Event | None = None, label: str = "load") -> tuple[list[Result], float]:
    """Runs the load in a thread, printing progress every 5 s; returns (results, wall s)."""
    out: list[list[Result]] = []
    deadline = time.monotonic() + seconds
    t = time.monotonic()
    th = threading.Thread(target=lambda: out.append(
        load.run(first, limit, concurrency, deadline, stop)), daemon=True)
    th.start()
    while th.is_alive():
        th.join(5)
        if th.is_alive():
            done = [r for r in load.results if r.index >= first]
            log(f"{label}: {len(done)} answered, {sum(not r.ok for r in done)} failed")
    return (out[0] if out else []), time.monotonic() - t


def summary_row(name: str, results: list[Result], wall: float, spread: str) -> str:
    lat = [r.seconds * 1000 for r in results if r.ok]
    return (f"| {name} | {len(results)} | {len(results) / wall if wall else 0:.1f} | "
            f"{percentile(lat, 50):.0f} | {percentile(lat, 95):.0f} | {percentile(lat, 99):.0f} |"
            f" {spread} | {sum(not r.ok for r in results)} |")


def uts_hostname(pid: int) -> str:
    """The host name process ``pid`` sees (its UTS namespace)."""
    out = subprocess.run(["nsenter", "--uts", f"--target={pid}", "hostname"],
                         capture_output=True, text=True, timeout=10, check=False)
    return out.stdout.strip() if out.returncode == 0 else f"? ({out.stderr.strip()})"


def tally(items: Iterable[str]) -> str:
    """'a x3, b x1' (most frequent first), or 'none'."""
    counts = Counter(items)
    return ", ".join(f"{k} x{v}" for k, v in counts.most_common()) or "none"


def executions(stack: Stack) -> dict[int, list[dict[str, Any]]]:
    """n8n's executions by request index (from the request body stored in the execution)."""
    rows = stack.psql_json(
        'select e.id, e.status, extract(epoch from e."createdAt") as created, '
        "substring(d.data from 'req-([0-9]{6})-taskbox') as idx, "
        "case when d.data like '%Node execution failed%' then 'runner disconnected' "
        "when d.data like '%Task request timed out%' then 'task request timed out' "
        "when d.data like '%Task was cancelled%' then 'task cancelled' "
        "when e.status = 'success' then '' else 'other' end as error "
        'from execution_entity e left join execution_data d on d."executionId" = e.id')
    by_index: dict[int, list[dict[str, Any]]] = {}
    assert isinstance(rows, list)
    for row in rows:
        idx = int(row["idx"]) if row.get("idx") else -1
        by_index.setdefault(idx, []).append(row)
    return by_index


def settle(stack: Stack, expected: int, timeout: float = 30) -> dict[int, list[dict[str, Any]]]:
    """n8n answers the webhook before it saves the execution: wait until all are final."""
    deadline = time.monotonic() + timeout
    while True:
        rows = executions(stack)
        final = sum(1 for k, v in rows.items() if k >= 0 and k != WARMUP for r in v
                    if r["status"] not in ("new", "running"))
        if final >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def run(args: argparse.Namespace, checks: Checks, stack: Stack) -> None:
    dep = start_deployment(stack, args)
    checks.record("stack", True, f"main :{dep.main_port}, worker brokers {dep.broker_ports}, "
                  f"runner health/metrics {dep.health_ports}")
    seen = []
    for k, runner in enumerate(dep.runners):
        status = proc_status(runner.pid)
        layers = {key.split('"')[1]: v for key, v in metrics(dep.health_ports[k]).items()
                  if key.startswith("taskbox_sandbox_layer_active{")}
        seen.append((status.get("Uid", "?").split()[:1], status.get("CapEff"),
                     status.get("CapBnd"), status.get("NoNewPrivs"),
                     sorted(n for n, v in layers.items() if v == 1)))
    want_uid = [str(RUNNER_UID)]
    nonroot = all(u == want_uid and eff == bnd == "0000000000000000" and nnp == "1"
                  and {"rlimits", "prctl", "landlock", "seccomp"} <= set(active)
                  for u, eff, bnd, nnp, active in seen)
    checks.record("runner-nonroot", nonroot and not args.runner_cmd,
                  "; ".join(f"taskbox{k + 1}: uid {u[0] if u else '?'}, CapEff {eff}, "
                            f"CapBnd {bnd}, NoNewPrivs {nnp}, layers active {','.join(a)}"
                            for k, (u, eff, bnd, nnp, a) in enumerate(seen))
                  + (" (custom --runner-cmd)" if args.runner_cmd else ""))
    load = Load(dep.main_port, wf.WEBHOOK_PATH, wf.request_body, wf.expected,
                timeout=args.http_timeout)
    table: list[str] = ["| phase | requests | req/s | p50 ms | p95 ms | p99 ms | "
                        "executions worker1 / worker2 (runner /metrics) | errors |",
                        "|---|---|---|---|---|---|---|---|"]

    # ---- phase 1: load -------------------------------------------------------------
    before = [metrics(p) for p in dep.health_ports]
    parts = {"n8n main": [p for p in stack.procs if p.name == "n8n-main"],
             "n8n workers": dep.workers, "taskbox runners": dep.runners,
             "redis": [p for p in stack.procs if p.name == "redis"],
             "postgres": [p for p in stack.procs if p.name == "postgres"]}
    cpu0 = {k: sum(cpu_seconds(p.pid) for p in v) for k, v in parts.items()}
    log(f"load: {args.requests} requests at concurrency {args.concurrency}")
    sampling = threading.Event()
    busy_samples: list[list[int]] = [[], []]

    def sample_busy() -> None:  # taskbox_busy_slots of both runners, 4 times a second
        while not sampling.wait(0.25):
            for k, port in enumerate(dep.health_ports):
                busy_samples[k].append(in_flight(metrics(port)))

    sampler = threading.Thread(target=sample_busy, daemon=True)
    sampler.start()
    results, wall = fire(load, 0, args.requests, args.concurrency, args.load_seconds)
    sampling.set()
    sampler.join(5)
    after = [metrics(p) for p in dep.health_ports]
    load_avg = os.getloadavg()[0]
    cpu = {k: (sum(cpu_seconds(p.pid) for p in v) - cpu0[k]) * 1000 / max(1, len(results))
           for k, v in parts.items()}
    ran = [tasks_ok(a) - tasks_ok(b) for a, b in zip(after, before, strict=True)]
    spread = f"{ran[0]} / {ran[1]}"
    table.append(summary_row("load", results, wall, spread))
    bad = [r for r in results if not r.ok]
    checks.record("load-answers", len(results) == args.requests and not bad,
                  f"{len(results) - len(bad)}/{args.requests} right"
                  + (f"; first bad: #{bad[0].index} {bad[0].status} {bad[0].detail}" if bad
                     else ""))
    total = sum(ran)
    checks.record("load-spread", total > 0 and min(ran) >= 0.2 * total,
                  f"worker1 {ran[0]}, worker2 {ran[1]}")
    rows = settle(stack, args.requests)
    stored_ok = sum(1 for i in range(args.requests) for r in rows.get(i, [])
                    if r["status"] == "success")
    all_tasks = sum(tasks_all(a) - tasks_all(b) for a, b in zip(after, before, strict=True))
    checks.record("load-accounting", total == args.requests == all_tasks == stored_ok,
                  f"runners ok {total} (all outcomes {all_tasks}), n8n successes {stored_ok}")

    # ---- phase 2: faults under load --------------------------------------------------
    first = 100_000
    stop = threading.Event()
    holder: dict[str, Any] = {}

    fload = Load(dep.main_port, wf.WEBHOOK_PATH, lambda i: wf.request_body(i, args.hold),
                 wf.expected, timeout=args.http_timeout)

    def fault_load() -> None:
        holder["results"], holder["wall"] = fire(
            fload, first, args.fault_requests, args.concurrency, args.fault_seconds, stop,
            label="fault phase")

    loader = threading.Thread(target=fault_load, daemon=True)
    log(f"fault phase: load running (each task holds {args.hold}s); SIGKILL taskbox1 in 5 s")
    loader.start()
    time.sleep(5)
    regs = registrations(dep, 0)
    # kill while taskbox1 has tasks in flight (its /metrics: taskbox_busy_slots)
    busy_until = time.monotonic() + 10
    while (busy := in_flight(metrics(dep.health_ports[0]))) < 1 \
            and time.monotonic() < busy_until:
        time.sleep(0.05)
    t_kill = time.time()
    os.killpg(dep.runners[0].pid, signal.SIGKILL)
    dep.runners[0].popen.wait(10)
    log(f"SIGKILLed taskbox1 (pid {dep.runners[0].pid}, its whole process group) with {busy} "
        "task(s) in flight; restarting it in 2 s")
    time.sleep(2)
    dep.runners[0] = start_runner(dep, 0)
    try:
        took = wait_registered(dep, 0, regs + 1, 60)
        t_rereg = time.time()
        checks.record("kill-restart", True, f"new pid {dep.runners[0].pid} registered "
                      f"{took:.1f}s after its start")
    except StackError as exc:
        t_rereg = float("inf")
        checks.record("kill-restart", False, str(exc))
    log("taskbox1 back; stopping taskbox2 for good in 8 s")
    time.sleep(8)
    m1_at_stop = metrics(dep.health_ports[0])
    t_stop = time.time()
    stack.stop(dep.runners[1], 20)
    log(f"stopped taskbox2 (SIGTERM; exit {dep.runners[1].popen.returncode}); worker2 has no "
        f"runner now; waiting {args.task_request_timeout + 6}s")
    time.sleep(args.task_request_timeout + 6)
    m1_later = metrics(dep.health_ports[0])
    t_w2 = time.time()
    log("stopping worker2 (SIGTERM), as an orchestrator removes a pod whose runner is gone")
    stack.stop(dep.workers[1], args.task_request_timeout + 25)
    t_w2_gone = time.time()
    log(f"worker2 exited after {t_w2_gone - t_w2:.1f}s (rc {dep.workers[1].popen.returncode});"
        f" {args.after_seconds:.0f}s more load on worker1 alone")
    time.sleep(args.after_seconds)
    stop.set()
    loader.join(args.http_timeout + 30)
    fault: list[Result] = holder.get("results", [])
    fwall: float = holder.get("wall", 0.0)
    m1_end = metrics(dep.health_ports[0])
    table.append(summary_row("faults", fault, fwall, "see below"))

    flying = [r for r in fault if r.start < t_kill < r.end]
    kill_window = [r for r in fault if r.start < t_rereg and r.end < t_stop]
    kill_failed = [r for r in kill_window if not r.ok]
    strays = [r for r in kill_failed if r not in flying]
    checks.record("kill-bounded", not strays and len(kill_failed) <= dep.runner_concurrency,
                  f"{len(kill_failed)} failed of {len(flying)} requests in flight at the kill"
                  + (f"; {len(strays)} failed that were not in flight" if strays else ""))
    rows = settle(stack, args.requests + len(fault))
    kinds = [[r["error"] for r in rows.get(res.index, [])] for res in kill_failed]
    checks.record("kill-recorded", busy >= 1 and len(kill_failed) >= 1
                  and all(k == ["runner disconnected"] for k in kinds),
                  f"{busy} task(s) in flight on taskbox1 at the kill; n8n: "
                  f"{tally('/'.join(k) or 'no execution' for k in kinds)}")
    after_restart = [r for r in fault if t_rereg < r.start and r.end < t_stop]
    checks.record("after-restart", bool(after_restart) and all(r.ok for r in after_restart),
                  f"{sum(r.ok for r in after_restart)}/{len(after_restart)} right")

    stop_window = [r for r in fault if r.end > t_stop and r.start < t_w2_gone]
    grew = tasks_ok(m1_later) - tasks_ok(m1_at_stop)
    served = [r for r in stop_window if r.ok]
    checks.record("other-worker-served", grew > 0 and bool(served),
                  f"taskbox1 ran {grew} tasks in the {args.task_request_timeout + 6}s after "
                  f"the stop; {len(served)}/{len(stop_window)} requests in the window right")
    stop_failed = [r for r in stop_window if not r.ok]
    recorded = [[r["error"] for r in rows.get(res.index, [])] for res in stop_failed]
    checks.record("stopped-recorded",
                  all(k == ["task request timed out"] for k in recorded),
                  f"{len(stop_failed)} failed; n8n: "
                  f"{tally('/'.join(k) or 'no execution' for k in recorded)}")
    after_recovery = [r for r in fault if r.start > t_w2_gone]
    grew_after = tasks_ok(m1_end) - tasks_ok(m1_later)
    checks.record("after-recovery",
                  len(after_recovery) >= 10 and all(r.ok for r in after_recovery),
                  f"{sum(r.ok for r in after_recovery)}/{len(after_recovery)} right "
                  f"(taskbox1 ran {grew_after} tasks meanwhile)")

    every = results + fault
    missing = [r.index for r in every if len(rows.get(r.index, [])) != 1]
    mismatch = [r.index for r in every if len(rows.get(r.index, [])) == 1
                and (rows[r.index][0]["status"] == "success") != r.ok]
    checks.record("db-accounting", not missing and not mismatch,
                  f"{len(every)} requests, "
                  f"{sum(len(v) for k, v in rows.items() if k >= 0 and k != WARMUP)} executions" + (f"; not exactly one: {missing[:5]}" if missing else "")
                  + (f"; status differs from the answer: {mismatch[:5]}" if mismatch else ""))

    n8ns = [*(x for x in stack.procs if x.name == "n8n-main"), *dep.workers[:1]]
    names = [uts_hostname(p.pid) for p in n8ns]  # worker2 has been stopped by now
    clashes = sum(count_in_log(p.logfile, "sharing the same hostId")
                  for p in [*n8ns, *dep.workers])
    checks.record("hostnames", names == ["tb16-main", "tb16-worker1"] and clashes == 0,
                  f"host names {names} + tb16-worker2 (a UTS namespace each); "
                  f"{clashes} 'sharing the same hostId' warnings")

    print()
    print("\n".join(table))
    print()
    print("taskbox_busy_slots during the load (sampled every 0.25 s): " + "; ".join(
        f"taskbox{k + 1} mean {sum(b) / max(1, len(b)):.2f}, max {max(b, default=0)} of "
        f"{dep.runner_concurrency}, all {dep.runner_concurrency} busy in "
        f"{100 * sum(x >= dep.runner_concurrency for x in b) / max(1, len(b)):.0f}% of samples"
        for k, b in enumerate(busy_samples)))
    print("CPU per request in the load phase (user + system, ms): " + ", ".join(
        f"{k} {v:.1f}" for k, v in cpu.items()) + f"; machine: {os.cpu_count()} cores, "
        f"1-min load average at the end of the load {load_avg:.1f}")
    t0 = fault[0].start if fault else t_kill
    print(f"fault phase timeline (s after its first request): SIGKILL taskbox1 "
          f"{t_kill - t0:.1f}, restarted {t_kill - t0 + 2:.1f}, re-registered "
          f"{t_rereg - t0:.1f}, SIGTERM taskbox2 (for good) {t_stop - t0:.1f}, worker2 "
          f"stopped {t_w2_gone - t0:.1f}, load ended {max((r.end for r in fault), default=t0) - t0:.1f}")
    print("n8n recorded for the fault phase's executions: " + tally(
        row["status"] + (f" ({row['error']})" if row["error"] else "")
        for res in fault for row in rows.get(res.index, [])))
    examples: dict[str, list[str]] = {}
    for res in fault:
        for row in rows.get(res.index, []):
            if row["status"] != "success":
                examples.setdefault(row["error"], []).append(str(row["id"]))
    if examples:
        print("  e.g. execution ids (execution_entity.id): " + "; ".join(
            f"{k}: {', '.join(v[:3])}" for k, v in sorted(examples.items())))
    print("failed requests' HTTP answers: " + tally(
        f"{r.status} {r.detail[:50]}" for r in fault if not r.ok))
    print()


def parse(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=int(env("TB_QUEUE_REQUESTS", "1000")))
    p.add_argument("--concurrency", type=int, default=int(env("TB_QUEUE_CONCURRENCY", "32")))
    p.add_argument("--runner-cmd", default=env("TB_QUEUE_RUNNER"),
                   help="the runner to test, as given (default: this checkout's taskbox as "
                        f"uid {RUNNER_UID} without capabilities, as the k8s sidecar)")
    p.add_argument("--runner-concurrency", type=int, default=5,
                   help="N8N_RUNNERS_MAX_CONCURRENCY of each taskbox")
    p.add_argument("--worker-concurrency", type=int, default=10,
                   help="n8n worker --concurrency")
    p.add_argument("--task-request-timeout", type=int, default=8,
                   help="the workers' N8N_RUNNERS_TASK_REQUEST_TIMEOUT, s")
    p.add_argument("--fault-requests", type=int, default=5000, help="cap for the fault phase")
    p.add_argument("--hold", type=float, default=0.5,
                   help="seconds each fault-phase task sleeps in the Code node")
    p.add_argument("--load-seconds", type=float, default=420,
                   help="deadline of the load phase (1,000 requests take ~85 s here)")
    p.add_argument("--fault-seconds", type=float, default=180)
    p.add_argument("--after-seconds", type=float, default=8)
    p.add_argument("--http-timeout", type=float, default=60)
    p.add_argument("--timeout", type=float, default=float(env("TB_QUEUE_TIMEOUT", "900")),
                   help="watchdog for the whole run, s")
    p.add_argument("--netns", choices=("auto", "0", "1"), default=env("TB_QUEUE_NETNS", "auto"))
    p.add_argument("--keep", action="store_true", default=env("TB_QUEUE_KEEP") == "1")
    p.add_argument("--n8n-home", default=env("N8N_E2E_HOME",
                                             str(Path.home() / ".cache/n8n-e2e")))
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        raise SystemExit("e2e-queue needs root (namespaces, PostgreSQL as uid 65534)")
    if not os.environ.get("TB_QUEUE_IN_NETNS"):
        wait_install(900)
        ensure_packages()
        if not args.runner_cmd:  # pip needs the registry: before the private netns
            try:
                os.environ["TB_QUEUE_RUNNER_ARGV"] = json.dumps(nonroot_runner(ROOT))
            except StackError as exc:
                raise SystemExit(f"cannot prepare the non-root runner: {exc}") from None
    reexec_in_netns(args)

    def bail(signum: int, _frame: object) -> None:
        raise Watchdog(signal.Signals(signum).name)

    for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, bail)
    signal.alarm(int(args.timeout))

    base = Path(os.environ.get("TMPDIR", "/tmp"))
    work = Path(tempfile.mkdtemp(prefix="tb16-queue-", dir=base))
    work.chmod(0o711)  # postgres (uid 65534) must reach its data dir inside
    stack = Stack(work, Path(args.n8n_home))
    checks = Checks()
    reason = "the run ended early"
    log(f"work dir {work}; netns {'private' if os.environ.get('TB_QUEUE_IN_NETNS') else 'host'}"
        f"; {args.requests} requests at concurrency {args.concurrency}")
    try:
        run(args, checks, stack)
        reason = "not checked"
    except StackError as exc:
        reason = str(exc).splitlines()[0]
        log(str(exc))
    except Watchdog as exc:
        reason = f"interrupted ({exc}; watchdog {args.timeout:.0f}s)"
        log(reason)
    finally:
        signal.alarm(0)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        left = stack.close()
        checks.record("cleanup", not left, "all stopped" if not left else f"left: {left}")
        passed, failed = checks.finish(reason)
        if failed or args.keep:
            log(f"work dir kept: {work} (one .log per process, postgres data in pg/)")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"run took {time.monotonic() - T0_RUN:.0f}s")
        print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


T0_RUN = time.monotonic()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
