#!/usr/bin/env python3
"""Run every ``security/corpus`` case through the real runner and score it.

For each configuration (``production``: the default allowlists and builtins deny
list; ``open``: everything allowed, so the OS layers alone must hold) the
scorecard starts the embedded broker on loopback and a real ``taskbox`` runner
as a child process with canaries planted, submits every case as a Code-node
task, and prints one line per case::

    PASS|LEAK|CRASH|LINGER <id> <category> expected=<x> got=<refused|contained|limit|error> <ms>

then ``cases: N, leaks: L, runner crashes: C, lingering workers: W, limits hit: K``
per configuration, per mode and for the whole run. Every configuration runs in two
modes (issue 11): ``root`` (workers drop to uid 65534) and ``non-root`` (the runner
runs as the unprivileged user ``tb11runner`` from a world-readable venv, and the
workers share its uid: the deployment most users have). It exits 1 on any leak,
runner crash or lingering worker, 2 if the runner cannot be started at all.

* LEAK: a canary (env, file, metadata, another task's data, the grant token,
  the auth token) or the escape marker appears in the result, the error or any
  print of the case.
* CRASH: the runner process exits, or a trivial task after the case fails.
* LINGER: a worker that read a task is still alive two seconds after that task's
  outcome (seen from outside, in /proc: a ready worker has read nothing yet).
* The runner's own log is checked for the same canaries after each configuration.

The scorecard re-executes itself in a private network namespace with only
loopback up (``unshare -n``) when it can; otherwise every target is 127.0.0.1
anyway. It prints which. See security/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE))
import nonroot  # noqa: E402  (stdlib only, beside this file)

MODES = ("root", "non-root")
LINGER_GRACE = 2.0  # seconds a used worker may take to be killed and reaped

#: Cases prove a dangerous capability by returning this marker; it never appears
#: literally in a case's source (they build it at run time), so a traceback that
#: quotes source lines cannot trip it.
ESCAPE_MARKER = "TASKBOX-ESCAPED"

TASK_TIMEOUT = 5  # N8N_RUNNERS_TASK_TIMEOUT for the runner under test
BROKER_TIMEOUT = 30.0  # the broker's own timeout: firing means the runner broke
MEMORY_LIMIT_MB = 256

CONFIGS: dict[str, dict[str, str]] = {
    # n8n's production defaults: nothing importable, default builtins deny list.
    "production": {"N8N_RUNNERS_STDLIB_ALLOW": "", "N8N_RUNNERS_EXTERNAL_ALLOW": ""},
    # Everything allowed: only the static name/attribute rules and the OS layers remain.
    "open": {
        "N8N_RUNNERS_STDLIB_ALLOW": "*",
        "N8N_RUNNERS_EXTERNAL_ALLOW": "*",
        "N8N_RUNNERS_BUILTINS_DENY": "",
    },
    # Not in "all": a typical hand-made allowlist with transitive imports on, for the
    # runtime import guard (E10's confused deputy, modules re-exported by allowed ones).
    "partial": {
        "N8N_RUNNERS_STDLIB_ALLOW": "json,math,re,datetime,time,random,string,collections,"
                                    "itertools,functools,importlib,concurrent,threading,urllib",
        "N8N_RUNNERS_EXTERNAL_ALLOW": "",
        "N8N_RUNNERS_ALLOW_TRANSITIVE_IMPORTS": "true",
    },
}
DEFAULT_CONFIGS = ("production", "open")

TRIVIAL_CODE = "return [{'json': {'alive': 1}}]"
VICTIM_CODE = (
    "n = 0\n"
    "while n < 15_000_000:\n"
    "    n += 1\n"
    "return [{'json': {'victim_done': len(_items[0]['json']['secret'])}}]\n"
)

_BROKER_ERRORS = re.compile(
    r"^(Node execution failed|Task execution aborted because runner became unresponsive"
    r"|Task request timed out|The task broker is shutting down"
    rf"|Task execution timed out after {int(BROKER_TIMEOUT)} )"
)
_LIMIT = re.compile(
    r"timed out|memory limit|CPU time limit|too large|MemoryError|RecursionError"
    r"|Too many open files|File too large|can't start new thread|Resource temporarily"
    r" unavailable|output limit|print limit|killed by signal SIGKILL|SIGXCPU",
    re.IGNORECASE,
)
_OS_REFUSAL = re.compile(
    r"PermissionError|Operation not permitted|Permission denied|EPERM|EACCES|SIGSYS"
    r"|Function not implemented",
)
_REFUSED = re.compile(
    r"Security violations? detected|is disallowed|not allowed|ImportError|ModuleNotFoundError:"
    r" No module named '(?:os|posix|sys)'|NameError|PermissionError|Operation not permitted"
    r"|Permission denied|EPERM|EACCES|SIGSYS|Function not implemented",
)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One corpus file: its metadata header and its Code-node body."""

    id: str
    category: str
    title: str
    expect: str
    expect_open: str
    mode: str
    victim: bool
    path: Path
    code: str

    def expected(self, config: str) -> str:
        """``expect`` is for the production defaults, ``expect-open`` for everything allowed."""
        if config == "open":
            return self.expect_open
        return self.expect


def load_cases(directory: Path = CORPUS, only: set[str] | None = None) -> list[Case]:
    """Parse every ``*.py`` case under ``directory`` (``# key: value`` header lines)."""
    cases = []
    for path in sorted(directory.glob("*.py")):
        code = path.read_text(encoding="utf-8")
        meta: dict[str, str] = {}
        for line in code.splitlines():
            match = re.match(r"#\s*([a-z-]+):\s*(.*)$", line)
            if not match:
                break
            meta[match.group(1)] = match.group(2).strip()
        case = Case(
            id=meta["id"], category=meta.get("category", "?"), title=meta.get("title", ""),
            expect=meta.get("expect", "refused"),
            expect_open=meta.get("expect-open", meta.get("expect", "refused")),
            mode=meta.get("mode", "all"), victim=meta.get("victim", "") == "yes",
            path=path, code=code,
        )
        if only is None or case.id in only:
            cases.append(case)
    return cases


# --------------------------------------------------------------------------- canaries


@dataclass
class Canaries:
    """Secrets planted where a runner keeps them; any of them in a case's output is a leak."""

    workdir: Path
    env: str = field(default_factory=lambda: f"CANARY-ENV-{secrets.token_hex(12)}")
    file: str = field(default_factory=lambda: f"CANARY-FILE-{secrets.token_hex(12)}")
    metadata: str = field(default_factory=lambda: f"CANARY-META-{secrets.token_hex(12)}")
    task: str = field(default_factory=lambda: f"CANARY-TASK-{secrets.token_hex(12)}")
    auth: str = field(default_factory=lambda: f"CANARY-AUTH-{secrets.token_hex(16)}")
    grants: list[str] = field(default_factory=list)
    log_leaks: list[str] = field(default_factory=list)

    @property
    def file_path(self) -> Path:
        return self.workdir / "canary-secret.txt"

    def plant_file(self, owner: tuple[int, int] | None = None) -> None:
        """A 0600 file owned by the runner's user in a 0700 directory."""
        self.workdir.chmod(0o700)
        fd = os.open(self.file_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.file + "\n")
        if owner is not None:
            os.chown(self.workdir, *owner)
            os.chown(self.file_path, *owner)

    def named(self) -> dict[str, str]:
        found = {
            "env canary": self.env, "file canary": self.file, "metadata canary": self.metadata,
            "other task's data": self.task, "auth token": self.auth,
            "escape marker": ESCAPE_MARKER,
        }
        for i, grant in enumerate(self.grants):
            found[f"grant token #{i + 1}"] = grant
        return found

    def leaks_in(self, text: str) -> list[str]:
        """Names of the canaries present in ``text`` (raw or hex-encoded)."""
        lowered = text.lower()
        return [
            name for name, value in self.named().items()
            if value in text or value.encode().hex() in lowered
        ]


# --------------------------------------------------------------------------- outcome scoring


def classify(status: str, error: Any) -> str:
    """refused | contained | limit | error, from the broker's view of the outcome."""
    return stopped_by(status, error)[0]


def stopped_by(status: str, error: Any) -> tuple[str, str]:
    """(outcome, the layer that decided it) for the per-layer table."""
    if status == "done":
        return "contained", "ran to completion"
    if isinstance(error, dict):
        message = str(error.get("message", ""))
        text = "\n".join(str(error.get(k, "")) for k in ("message", "description"))
    else:
        message = text = str(error)
    if _BROKER_ERRORS.match(message):
        return "error", "runner or broker failure"
    if message.startswith("Security violations detected"):
        return "refused", "static policy (runner)"
    if _LIMIT.search(text):
        return "limit", "resource limits"
    if _OS_REFUSAL.search(text):
        return "refused", "OS layers (seccomp, Landlock, uid)"
    if _REFUSED.search(text):
        return "refused", "Python layers (builtins, import guard)"
    return "contained", "ran, failed harmlessly"


@dataclass
class Score:
    """One line of the scorecard."""

    case: Case
    config: str
    got: str
    ms: float
    leaks: list[str]
    crashed: bool
    detail: str = ""
    shown: str = ""
    layer: str = ""
    lingering: int = 0
    mode: str = "root"

    @property
    def verdict(self) -> str:
        if self.leaks:
            return "LEAK"
        if self.crashed:
            return "CRASH"
        if self.lingering:
            return "LINGER"
        return "PASS"

    def line(self) -> str:
        text = (f"{self.verdict} {self.case.id} {self.case.category} "
                f"expected={self.case.expected(self.config)} got={self.got} {self.ms:.0f}")
        if self.leaks:
            text += "  # leaked: " + ", ".join(self.leaks)
        if (self.crashed or self.lingering) and self.detail:
            text += "  # " + self.detail
        return text


def layer_table(scores: list[Score]) -> str:
    """How many cases each layer decided, e.g. ``  static policy (runner)   41``."""
    counts: dict[str, int] = {}
    for score in scores:
        counts[score.layer] = counts.get(score.layer, 0) + 1
    width = max((len(k) for k in counts), default=0)
    return "\n".join(f"  {layer:<{width}}  {n:>3}" for layer, n in
                     sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summary(scores: list[Score]) -> str:
    leaks = sum(1 for s in scores if s.leaks)
    crashes = sum(1 for s in scores if s.crashed)
    lingering = sum(s.lingering for s in scores)
    limits = sum(1 for s in scores if s.got == "limit")
    return (f"cases: {len(scores)}, leaks: {leaks}, runner crashes: {crashes}, "
            f"lingering workers: {lingering}, limits hit: {limits}")


# --------------------------------------------------------------------------- network


def bring_loopback_up() -> None:
    """``ip link set lo up`` with one ioctl, so no ``ip`` binary is needed."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def reexec_in_netns(argv: list[str]) -> int | None:
    """Run this script again inside ``unshare -n``; ``None`` if that is impossible."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        # As non-root ``unshare -rn`` would map us to root in a user namespace,
        # where the runner's drop to uid 65534 cannot work; stay on loopback.
        return None
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return None
    command = [unshare, "-n", "--", sys.executable, str(Path(__file__).resolve()),
               "--in-netns", *argv]
    return subprocess.run(command, check=False).returncode


async def serve_metadata(canaries: Canaries) -> asyncio.Server:
    """A loopback stand-in for a cloud metadata endpoint that hands out a canary."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = json.dumps({"AccessKeyId": "AKIA-TASKBOX", "Token": canaries.metadata})
            writer.write(
                b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body.encode()
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


# --------------------------------------------------------------------------- runner


class RunnerUnderTest:
    """A real ``taskbox`` runner child process connected to the embedded broker."""

    def __init__(self, broker: Any, canaries: Canaries, config: dict[str, str],
                 log_path: Path, mode: Mode) -> None:
        self.broker = broker
        self.canaries = canaries
        self.config = config
        self.log_path = log_path
        self.mode = mode
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        grant = self.broker.mint_grant_token()
        self.canaries.grants.append(grant)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.mode.home),
            "N8N_RUNNERS_TASK_BROKER_URI": self.broker.uri,
            "N8N_RUNNERS_GRANT_TOKEN": grant,
            "N8N_RUNNERS_AUTH_TOKEN": self.canaries.auth,
            "N8N_RUNNERS_MAX_CONCURRENCY": "2",
            "N8N_RUNNERS_TASK_TIMEOUT": str(TASK_TIMEOUT),
            "TASKBOX_MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB),
            "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "info",
            "TASKBOX_CANARY_ENV": self.canaries.env,
        }
        env.update(self.config)
        if self.mode.disable:
            env["TASKBOX_TEST_DISABLE_LAYERS"] = self.mode.disable
            env["TASKBOX_ALLOW_NO_LANDLOCK"] = "true"
        return env

    async def start(self) -> None:
        before = set(self.broker.runner_ids)
        log = self.log_path.open("ab")
        try:
            user: dict[str, Any] = {}
            if self.mode.user is not None:
                user = {"user": self.mode.user[0], "group": self.mode.user[1],
                        "extra_groups": []}
            self.proc = await asyncio.create_subprocess_exec(
                self.mode.python, "-m", "taskbox", env=self.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=str(self.mode.home), **user,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if set(self.broker.runner_ids) - before:
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the runner did not register (see {self.log_path}):\n"
                           + self.log_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        self.proc = None


@dataclass
class Mode:
    """Who the runner runs as: ``root`` (this interpreter) or ``non-root``."""

    name: str
    python: str
    home: Path
    user: tuple[int, int] | None = None  # (uid, gid) to switch to
    disable: str = ""  # TASKBOX_TEST_DISABLE_LAYERS


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def used_workers(runner_pid: int) -> list[int]:
    """Live workers of this runner that have read a task (rchar > 0).

    Workers are the zygote's children; the zygote is the runner's child. A ready
    worker blocks reading its channel and has read nothing, so any read byte
    means a task reached it.
    """
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = _stat_fields(int(entry))
                if fields[0] != "Z":
                    parents[int(entry)] = int(fields[1])
    zygotes = {pid for pid, ppid in parents.items() if ppid == runner_pid}
    used = []
    for pid, ppid in parents.items():
        if ppid in zygotes:
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/io") as io:
                counters = dict(line.split(":", 1) for line in io.read().splitlines())
                if int(counters["rchar"]) > 0:
                    used.append(pid)
    return used


async def check_lingering(runner: RunnerUnderTest) -> tuple[int, str]:
    """Workers that read a task and are still alive ``LINGER_GRACE`` s later."""
    if not runner.alive():
        return 0, ""
    deadline = time.monotonic() + LINGER_GRACE
    while True:
        left = used_workers(runner.pid)
        if not left or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    return len(left), (f"worker(s) {left} still alive {LINGER_GRACE} s after their task"
                       if left else "")


def settings(code: str, mode: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "code": code,
        "nodeMode": "runOnceForEachItem" if mode == "each" else "runOnceForAllItems",
        "items": items, "continueOnFail": False,
        "workflowName": "security-scorecard", "nodeName": "Code",
    }


def substitute(code: str, canaries: Canaries, runner_pid: int, broker_port: int,
               metadata_port: int) -> str:
    return (code.replace("{{CANARY_FILE}}", str(canaries.file_path))
            .replace("{{RUNNER_PID}}", str(runner_pid))
            .replace("{{BROKER_PORT}}", str(broker_port))
            .replace("{{METADATA_PORT}}", str(metadata_port)))


async def run_case(case: Case, config_name: str, runner: RunnerUnderTest, canaries: Canaries,
                   metadata_port: int) -> Score:
    broker = runner.broker
    code = substitute(case.code, canaries, runner.pid, broker.port, metadata_port)
    items = [{"json": {"n": 1}, "pairedItem": {"item": 0}},
             {"json": {"n": 2}, "pairedItem": {"item": 1}}]
    victim: asyncio.Task[Any] | None = None
    if case.victim:
        victim = asyncio.create_task(broker.submit(
            settings(VICTIM_CODE, "all", [{"json": {"secret": canaries.task}}]),
            timeout=BROKER_TIMEOUT))
        await asyncio.sleep(0.3)  # let it start in its own worker
    started = time.monotonic()
    outcome = await broker.submit(settings(code, case.mode, items), timeout=BROKER_TIMEOUT)
    ms = (time.monotonic() - started) * 1000
    if victim is not None:
        with contextlib.suppress(Exception):
            await victim
    seen = json.dumps({"result": outcome.result, "error": outcome.error,
                       "prints": outcome.prints}, default=str)
    got, layer = stopped_by(outcome.status, outcome.error)
    crashed, detail = await check_alive(runner)
    lingering, why = await check_lingering(runner)
    shown = outcome.result if outcome.status == "done" else outcome.error
    return Score(case, config_name, got, ms, canaries.leaks_in(seen), crashed,
                 detail or why, json.dumps(shown, default=str)[:300], layer, lingering,
                 runner.mode.name)


async def check_alive(runner: RunnerUnderTest) -> tuple[bool, str]:
    """The runner still answers: its process lives and a trivial task succeeds."""
    if not runner.alive():
        return True, f"runner exited with code {runner.proc.returncode if runner.proc else '?'}"
    outcome = await runner.broker.submit(settings(TRIVIAL_CODE, "all", []), timeout=20.0)
    if outcome.status != "done" or outcome.result != [{"json": {"alive": 1}}]:
        return True, f"trivial task failed: {str(outcome.error)[:200]}"
    return False, ""


async def run_config(name: str, cases: list[Case], canaries: Canaries, metadata_port: int,
                     logdir: Path, verbose: bool, mode: Mode) -> list[Score]:
    # Imported here so that --help and the namespace re-exec work without taskbox.
    from taskbox.broker import EmbeddedBroker

    print(f"== {mode.name}: config {name} "
          f"({', '.join(f'{k}={v!r}' for k, v in CONFIGS[name].items())})", flush=True)
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token=canaries.auth,
                            task_timeout=BROKER_TIMEOUT, rate_limit=None)
    await broker.start()
    runner = RunnerUnderTest(broker, canaries, CONFIGS[name],
                             logdir / f"runner-{mode.name}-{name}.log", mode)
    scores: list[Score] = []
    try:
        await runner.start()
        for case in cases:
            score = await run_case(case, name, runner, canaries, metadata_port)
            scores.append(score)
            print(score.line(), flush=True)
            if verbose:
                print(f"    {score.shown}", flush=True)
            if score.crashed:
                if verbose:
                    print(runner.log_tail(), flush=True)
                await runner.stop()
                await runner.start()
    finally:
        await runner.stop()
        await broker.aclose()
    with contextlib.suppress(OSError):
        in_log = canaries.leaks_in(runner.log_path.read_text(errors="replace"))
        if in_log:
            # Secrets in the runner's own log would travel wherever logs are shipped.
            print(f"LEAK runner-log {mode.name} {name} leaked: {', '.join(in_log)}",
                  flush=True)
            canaries.log_leaks += in_log
    print(f"{mode.name} {name}: decided by\n{layer_table(scores)}", flush=True)
    print(f"{mode.name} {name}: {summary(scores)}", flush=True)
    return scores


def prepare_modes(wanted: str, tmp: Path) -> tuple[list[Mode], list[str]]:
    """The modes this machine can run, and why any wanted one cannot."""
    names = list(MODES) if wanted == "both" else [wanted]
    modes: list[Mode] = []
    skipped: list[str] = []
    is_root = os.geteuid() == 0
    for name in names:
        home = tmp / name
        home.mkdir()
        if name == "root":
            if not is_root:
                skipped.append("root: not running as root")
                continue
            modes.append(Mode(name, sys.executable, home))
            continue
        if not is_root:  # already unprivileged: run as ourselves
            modes.append(Mode(name, sys.executable, home))
            continue
        try:
            uid, gid = nonroot.ensure_user()
            tmp.chmod(0o755)
            python = nonroot.make_venv(tmp / "venv", uid, gid)
        except nonroot.NonRootUnavailable as exc:
            skipped.append(f"non-root: {exc}")
            continue
        os.chown(home, uid, gid)
        modes.append(Mode(name, str(python), home, (uid, gid)))
    return modes, skipped


async def run_all(args: argparse.Namespace) -> int:
    only = set(args.only.split(",")) if args.only else None
    cases = load_cases(args.corpus, only)
    if not cases:
        print(f"no cases found in {args.corpus}", flush=True)
        return 2
    names = list(DEFAULT_CONFIGS) if args.config == "all" else [args.config]
    all_scores: list[Score] = []
    log_leaks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="taskbox-scorecard-") as tmp:
        modes, skipped = prepare_modes(args.mode, Path(tmp))
        for mode in modes:
            mode.disable = args.disable
        for reason in skipped:
            print(f"mode skipped: {reason}", flush=True)
        if not modes:
            return 2
        for mode in modes:
            secret_dir = Path(tmp) / f"secrets-{mode.name}"
            secret_dir.mkdir()
            canaries = Canaries(secret_dir)
            canaries.plant_file(mode.user)
            metadata = await serve_metadata(canaries)
            port = int(metadata.sockets[0].getsockname()[1])
            scores: list[Score] = []
            try:
                for name in names:
                    try:
                        scores += await run_config(name, cases, canaries, port,
                                                   args.logs or Path(tmp), args.verbose, mode)
                    except RuntimeError as exc:
                        print(f"cannot run config {name} as {mode.name}: {exc}", flush=True)
                        return 2
            finally:
                metadata.close()
                await metadata.wait_closed()
            print(f"== mode {mode.name}: {summary(scores)}", flush=True)
            all_scores += scores
            log_leaks += canaries.log_leaks
    off = [s for s in all_scores if s.got != s.case.expected(s.config)]
    if off:
        print("not as expected (informational): " + ", ".join(
            f"{s.mode}:{s.config}:{s.case.id}={s.got}" for s in off))
    print(scoreboard(all_scores), flush=True)
    print(summary(all_scores), flush=True)
    return 1 if log_leaks or any(s.leaks or s.crashed or s.lingering for s in all_scores) else 0


def scoreboard(scores: list[Score]) -> str:
    """One table per mode: a row per configuration (issue 11's closing scorecards)."""
    out = []
    for mode in dict.fromkeys(s.mode for s in scores):
        out.append(f"\n{mode}:\n\n| config | cases | leaks | runner crashes | "
                   "lingering workers | limits hit |\n|---|---|---|---|---|---|")
        for config in dict.fromkeys(s.config for s in scores if s.mode == mode):
            rows = [s for s in scores if s.mode == mode and s.config == config]
            out.append(f"| {config} | {len(rows)} | {sum(1 for s in rows if s.leaks)} | "
                       f"{sum(1 for s in rows if s.crashed)} | "
                       f"{sum(s.lingering for s in rows)} | "
                       f"{sum(1 for s in rows if s.got == 'limit')} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--disable", metavar="LAYERS", default="",
                        help="TASKBOX_TEST_DISABLE_LAYERS for the runner, e.g. landlock: "
                             "what the other layers still hold")
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both",
                        help="run the runner as root, as the unprivileged tb11runner, or both")
    parser.add_argument("--only", metavar="IDS", help="comma list of case ids, e.g. A01,J04")
    parser.add_argument("--no-netns", action="store_true",
                        help="do not enter a private network namespace")
    parser.add_argument("--verbose", action="store_true",
                        help="show each outcome, and the runner log on a crash")
    parser.add_argument("--corpus", type=Path, default=CORPUS, metavar="DIR",
                        help="directory of case files (default: security/corpus)")
    parser.add_argument("--logs", type=Path, metavar="DIR",
                        help="keep the runner logs (runner-<config>.log) in DIR")
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    if args.in_netns:
        bring_loopback_up()
        print("network: private network namespace, loopback only", flush=True)
    elif not args.no_netns:
        code = reexec_in_netns(argv)
        if code is not None:
            return code
        print("network: host namespace (unshare unavailable or not root); "
              "every case targets 127.0.0.1 only", flush=True)
    else:
        print("network: host namespace (--no-netns); every case targets 127.0.0.1 only",
              flush=True)
    return asyncio.run(run_all(args))


if __name__ == "__main__":
    sys.exit(main())
