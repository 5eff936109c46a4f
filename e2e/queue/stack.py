"""Starting and stopping the real parts: redis-server, PostgreSQL, n8n main + workers, taskbox.

Every process is started here, in its own process group, and recorded; ``Stack.close``
stops them all by pid (TERM, then KILL after a grace period) and is called on every
exit path. Each is also started with a parent-death signal (``setpriv --pdeathsig
KILL``), so not even a SIGKILL of the harness leaves one behind. Nothing listens beyond 127.0.0.1, and the caller normally runs all of it in
a private network namespace that has only loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SETPRIV = shutil.which("setpriv")  # util-linux; --pdeathsig since 2.33
NOBODY = 65534  # PostgreSQL refuses to run as root


def log(msg: str) -> None:
    print(f"[queue +{time.monotonic() - T0:5.1f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.monotonic()


class StackError(RuntimeError):
    """A part did not start or answer in time; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback only
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (OSError, ValueError):
        return 0, b""


def wait_for(what: str, ready: Callable[[], bool], timeout: float,
             alive: Callable[[], bool] = lambda: True, logfile: Path | None = None) -> float:
    """Polls ``ready`` (<= timeout s); returns seconds taken, raises StackError otherwise."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if ready():
            return time.monotonic() - start
        if not alive():
            raise StackError(f"{what}: process exited" + tail(logfile))
        time.sleep(0.25)
    raise StackError(f"{what}: not ready after {timeout:.0f} s" + tail(logfile))


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace"))
    return f"\n  last lines of {path}:\n" + "\n".join(
        "    | " + line for line in text.splitlines()[-lines:])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    logfile: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Stack:
    work: Path
    n8n_home: Path
    procs: list[Proc] = field(default_factory=list)
    auth_token: str = field(default_factory=lambda: secrets.token_hex(24))
    encryption_key: str = field(default_factory=lambda: secrets.token_hex(24))
    pg_password: str = field(default_factory=lambda: secrets.token_hex(12))
    redis_port: int = 0
    pg_port: int = 0

    # ------------------------------------------------------------------ processes

    def spawn(self, name: str, argv: list[str], env: dict[str, str], *,
              user: int | None = None, cwd: Path | None = None) -> Proc:
        logfile = self.work / f"{name}.log"
        # SIGKILLed with us even if this harness is SIGKILLed itself. A credential change
        # clears the parent-death signal, so an argv that is a setpriv already (the
        # non-root runner) gets the option in that same call, applied after the change.
        if SETPRIV and argv[0] == SETPRIV:
            argv = [SETPRIV, "--pdeathsig", "KILL", *argv[1:]]
        elif SETPRIV:
            argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        with logfile.open("ab") as out:
            popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=cwd, user=user, group=user,
                                     extra_groups=[] if user is not None else None)
        proc = Proc(name, popen, logfile)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Signal the process group led by ``proc``, wait, SIGKILL the group after ``grace``."""
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"{proc.name} (pid {proc.pid}) ignored signal {sig} for {grace:.0f}s: SIGKILL")
        # the leader may be gone while others of its group live on: KILL the rest
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(5)

    def close(self) -> list[str]:
        """Stop everything, newest first; returns the names of processes still alive after."""
        for proc in reversed(self.procs):
            grace = 20.0 if proc.name.startswith("n8n") else 10.0
            self.stop(proc, grace)
        return [f"{p.name} (pid {p.pid})" for p in self.procs if p.alive()]

    # ------------------------------------------------------------------ redis

    def start_redis(self) -> Proc:
        self.redis_port = free_port()
        rdir = self.work / "redis"
        rdir.mkdir()
        proc = self.spawn("redis", [
            shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
            "--port", str(self.redis_port), "--dir", str(rdir), "--save", "",
            "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
        ], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})

        def pong() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), 1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        took = wait_for("redis-server", pong, 20, proc.alive, proc.logfile)
        log(f"redis-server ready in {took:.1f}s (pid {proc.pid}, port {self.redis_port})")
        return proc

    # ------------------------------------------------------------------ postgres

    def pg_bin(self, tool: str) -> str:
        candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
        if not candidates:
            raise StackError(f"no {tool} under {PG_BIN_GLOB} (apt-get install postgresql)")
        return str(candidates[-1])

    def start_postgres(self) -> Proc:
        """initdb + postgres as uid 65534 (PostgreSQL will not run as root), TCP on loopback."""
        self.pg_port = free_port()
        pg = self.work / "pg"
        pg.mkdir()
        os.chown(pg, NOBODY, NOBODY)
        pwfile = pg / "pw"
        pwfile.write_text(self.pg_password + "\n")
        os.chown(pwfile, NOBODY, NOBODY)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(pg)}
        init = subprocess.run(
            [self.pg_bin("initdb"), "-D", str(pg / "data"), "-U", "n8n", "-E", "UTF8",
             "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
            env=env, user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
            timeout=120, check=False)
        if init.returncode != 0:
            raise StackError("initdb failed:\n" + init.stdout.decode() + init.stderr.decode())
        proc = self.spawn("postgres", [
            self.pg_bin("postgres"), "-D", str(pg / "data"), "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={self.pg_port}", "-c", "unix_socket_directories=", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=100", "-c", "shared_buffers=64MB",
        ], env, user=NOBODY, cwd=pg)
        took = wait_for("postgres", lambda: self.psql("select 1", db="postgres") == "1", 60,
                        proc.alive, proc.logfile)
        self.psql("create database n8n", db="postgres")
        log(f"postgres ready in {took:.1f}s (pid {proc.pid}, port {self.pg_port}, "
            f"uid {NOBODY}, data in {pg / 'data'})")
        return proc

    def psql(self, sql: str, db: str = "n8n") -> str | None:
        """One statement; its output (unaligned, tuples only), or None on any error."""
        try:
            out = subprocess.run(
                [self.pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "n8n",
                 "-d", db, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                     "PGPASSWORD": self.pg_password, "PGCONNECT_TIMEOUT": "3"},
                capture_output=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            return None
        return out.stdout.decode().strip() if out.returncode == 0 else None

    def psql_json(self, sql: str) -> object:
        """A query wrapped in json_agg; [] when it returns no rows."""
        out = self.psql(f"select coalesce(json_agg(q), '[]'::json) from ({sql}) q")
        if out is None:
            raise StackError(f"query failed: {sql}")
        return json.loads(out)

    # ------------------------------------------------------------------ n8n

    def node_and_n8n(self) -> tuple[str, str]:
        bins = sorted(self.n8n_home.glob("nodejs/node_modules/node-linux-*/bin/node"))
        n8n_js = self.n8n_home / "app/node_modules/n8n/bin/n8n"
        if not bins or not n8n_js.exists():
            raise StackError(f"no n8n install in {self.n8n_home}: run ../shared/n8n-e2e/install.sh")
        return str(bins[0]), str(n8n_js)

    def n8n_env(self, role: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What every n8n process of the deployment shares, plus its own user folder."""
        node, _ = self.node_and_n8n()
        home = self.work / f"home-{role}"
        home.mkdir(exist_ok=True)
        env = {
            "PATH": f"{Path(node).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home), "N8N_USER_FOLDER": str(home),
            # queue mode: Bull on Redis, one Postgres, one encryption key for all
            "EXECUTIONS_MODE": "queue",
            "QUEUE_BULL_REDIS_HOST": "127.0.0.1", "QUEUE_BULL_REDIS_PORT": str(self.redis_port),
            "DB_TYPE": "postgresdb", "DB_POSTGRESDB_HOST": "127.0.0.1",
            "DB_POSTGRESDB_PORT": str(self.pg_port), "DB_POSTGRESDB_DATABASE": "n8n",
            "DB_POSTGRESDB_USER": "n8n", "DB_POSTGRESDB_PASSWORD": self.pg_password,
            "N8N_ENCRYPTION_KEY": self.encryption_key,
            # manual executions go to the workers too, so main runs no task broker
            "OFFLOAD_MANUAL_EXECUTIONS_TO_WORKERS": "true",
            # external runners: each worker's broker on its own loopback port
            "N8N_RUNNERS_MODE": "external", "N8N_RUNNERS_AUTH_TOKEN": self.auth_token,
            "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_RUNNERS_TASK_TIMEOUT": "60", "N8N_PYTHON_ENABLED": "true",
            "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
            "N8N_GRACEFUL_SHUTDOWN_TIMEOUT": "10",
            # nothing may phone home
            "N8N_DIAGNOSTICS_ENABLED": "false", "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENABLED": "false",
            "N8N_PERSONALIZATION_ENABLED": "false", "N8N_TEMPLATES_ENABLED": "false",
            "N8N_DYNAMIC_BANNERS_ENABLED": "false", "N8N_HIRING_BANNER_ENABLED": "false",
            "N8N_LICENSE_AUTO_RENEW_ENABLED": "false", "N8N_AI_ENABLED": "false",
            "N8N_DISABLED_MODULES": "mcp-registry",
            "N8N_LOG_LEVEL": os.environ.get("TB_QUEUE_N8N_LOG_LEVEL", "info"),
            "N8N_LOG_OUTPUT": "console",
        }
        env.update(extra or {})
        return env

    def n8n_cli(self, name: str, args: list[str], env: dict[str, str], timeout: float) -> None:
        node, n8n_js = self.node_and_n8n()
        proc = self.spawn(name, [node, n8n_js, *args], env)
        try:
            rc = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise StackError(f"n8n {args[0]} took over {timeout:.0f} s" + tail(proc.logfile)) \
                from None
        if rc != 0:
            raise StackError(f"n8n {args[0]} failed (rc {rc})" + tail(proc.logfile))

    def start_n8n(self, name: str, hostname: str, args: list[str], env: dict[str, str]) -> Proc:
        """``n8n <args>`` in a UTS namespace of its own: n8n names instances
        ``<type>-<hostname>`` in a container and warns when two share one."""
        node, n8n_js = self.node_and_n8n()
        argv = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"',
                hostname, node, n8n_js, *args]
        return self.spawn(name, argv, env)

    # ------------------------------------------------------------------ taskbox

    def start_runner(self, name: str, argv: list[str], broker_port: int, health_port: int,
                     concurrency: int) -> Proc:
        """taskbox as a worker's sidecar runs it: the auth token (it mints its own grant
        tokens on every (re)connect), the worker's broker on loopback, /healthz + /metrics."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "N8N_RUNNERS_TASK_BROKER_URI": f"http://127.0.0.1:{broker_port}",
            "N8N_RUNNERS_AUTH_TOKEN": self.auth_token,
            "N8N_RUNNERS_MAX_CONCURRENCY": str(concurrency),
            "N8N_RUNNERS_TASK_TIMEOUT": "60",
            "N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED": "true",
            "N8N_RUNNERS_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT": str(health_port),
            "N8N_RUNNERS_STDLIB_ALLOW": "time",
            "N8N_RUNNERS_EXTERNAL_ALLOW": "",
            # what deploy/k8s/n8n-worker.yaml requires: refuse to start without them
            "TASKBOX_REQUIRE_LAYERS": "rlimits,prctl,landlock,seccomp",
        }
        return self.spawn(name, argv, env, cwd=Path("/"))


def cpu_seconds(pid: int) -> float:
    """CPU (user + system) of ``pid`` and its live descendants, including what they
    reaped (cutime/cstime): taskbox's zygote reaps every task worker."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo.extend(c for c, (ppid, _) in stats.items() if ppid == p)
    return total


def count_in_log(path: Path, needle: str) -> int:
    if not path.exists():
        return 0
    return path.read_text(errors="replace").count(needle)


def metrics(port: int) -> dict[str, float]:
    """taskbox's /metrics as {'name{labels}': value}; {} when it does not answer."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return parse_metrics(body.decode(errors="replace")) if status == 200 else {}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus' text format as {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def tasks_ok(sample: dict[str, float]) -> int:
    return int(sample.get('taskbox_tasks_total{outcome="ok"}', 0))


def tasks_all(sample: dict[str, float]) -> int:
    return int(sum(v for k, v in sample.items() if k.startswith("taskbox_tasks_total{")))


def in_flight(sample: dict[str, float]) -> int:
    """Tasks running now (``taskbox_busy_slots``; accepted - finished on older taskbox)."""
    if "taskbox_busy_slots" in sample:
        return int(sample["taskbox_busy_slots"])
    return int(sample.get("taskbox_offers_accepted_total", 0)) - tasks_all(sample)


#: The sidecar's uid (deploy/Dockerfile's TASKBOX_UID, deploy/k8s runAsUser).
RUNNER_UID = 10001
VENV_CACHE = Path("/var/tmp/tb16-queue-venv")


def nonroot_runner(root: Path) -> list[str]:
    """argv of taskbox as the Kubernetes sidecar runs it: uid/gid 10001, no capabilities
    (bounding and inheritable sets empty), no_new_privs.

    The project's .venv lives under /root (mode 0700 here), which uid 10001 cannot read,
    so this installs the checkout (non-editable) into a venv made from Debian's
    world-readable /usr/bin/python3 under /var/tmp, cached by a hash of the sources.
    Needs the package registry: call it before entering the private network namespace.
    Raises StackError when that cannot be done.
    """
    digest = hashlib.sha256()
    for path in sorted([root / "pyproject.toml", *(root / "src").rglob("*"),
                        *(root / "sandbox").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    venv = VENV_CACHE / digest.hexdigest()[:16]
    taskbox = venv / "bin" / "taskbox"
    if not (venv / ".complete").exists():
        if VENV_CACHE.exists():
            shutil.rmtree(VENV_CACHE)  # older builds
        VENV_CACHE.mkdir(mode=0o755, parents=True)
        log(f"building a venv uid {RUNNER_UID} can read ({venv}): /usr/bin/python3 + "
            "pip install of this checkout (~30 s, cached)")
        for argv in (["/usr/bin/python3", "-m", "venv", str(venv)],
                     [str(venv / "bin/pip"), "install", "--quiet", "--no-cache-dir", str(root)]):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                                  check=False)
            if done.returncode != 0:
                raise StackError(f"{' '.join(argv[:3])} failed: {done.stderr[-500:]}")
        (venv / ".complete").touch()
    return [SETPRIV or "setpriv", f"--reuid={RUNNER_UID}", f"--regid={RUNNER_UID}",
            "--clear-groups", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all",
            str(taskbox), "connect"]


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict ({} when the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}
