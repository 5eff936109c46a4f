"""Tests for taskbox_sandbox.confine.

Each case forks a worker that confines itself with ``Confinement.apply()``,
attempts one hostile action and reports the outcome as JSON over a pipe; the
parent asserts on the report. Workers always leave through ``os._exit`` and
are reaped with a bounded wait (SIGKILL after ``WAIT_S``).

Modules a worker uses after ``apply()`` are imported here, up front, except
``decimal`` and ``csv``, which one test imports lazily on purpose.
"""

from __future__ import annotations

import ctypes
import datetime
import encodings.idna  # noqa: F401 - getaddrinfo imports it lazily: preload it
import errno
import json
import os
import re
import resource
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # mypy knows the folder; the installed package is taskbox_sandbox
    from sandbox import confine
else:
    from taskbox_sandbox import confine

Confinement, probe = confine.Confinement, confine.probe

NOBODY = 65534
WAIT_S = 10.0
# Generous: these tests fork the pytest process itself, whose address space grows
# with every suite that ran before (the memory tests below set their own limit).
LIMITS: dict[str, Any] = {
    "memory_limit_mb": 2048,
    "cpu_limit_s": 10,
    "max_open_files": 64,
    "max_file_size": 0,
    "worker_uid": NOBODY,
    "worker_gid": NOBODY,
    "task_timeout": 60.0,  # not ours: must be ignored
}
PROBED = probe()
IS_ROOT = os.geteuid() == 0
LANDLOCK_ABI = confine._landlock_abi()

needs_seccomp = pytest.mark.skipif(not PROBED["seccomp"], reason="seccomp unavailable here")
needs_landlock = pytest.mark.skipif(not PROBED["landlock"], reason="Landlock unavailable here")
needs_sandbox = pytest.mark.skipif(
    not (PROBED["seccomp"] and PROBED["landlock"]), reason="seccomp or Landlock unavailable here"
)

_libc = ctypes.CDLL(None, use_errno=True)


# --- harness -------------------------------------------------------------------


@dataclass
class Outcome:
    report: dict[str, Any] | None  # None: the worker died before reporting
    status: int  # waitpid status

    @property
    def error(self) -> str | None:
        assert self.report is not None, f"worker died, status {self.status:#x}"
        assert "setup_error" not in self.report, self.report["setup_error"]
        error: str | None = self.report["error"]
        return error

    @property
    def errno(self) -> int | None:
        assert self.report is not None
        value: int | None = self.report["errno"]
        return value

    @property
    def value(self) -> Any:
        assert self.error is None, self.report
        assert self.report is not None
        return self.report["value"]


def drop_to_nobody() -> None:
    """What a non-root runner looks like: no caps, uid 65534."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)


def _worker(
    write_end: int,
    body: Callable[[dict[str, Any]], Any],
    limits: Mapping[str, Any],
    probed: Mapping[str, bool] | None,
    as_nobody: bool,
    setup: Callable[[int], dict[str, Any]] | None,
) -> None:
    try:
        if as_nobody:
            drop_to_nobody()
        env = setup(write_end) if setup is not None else {}
        conf = Confinement(limits, probe() if probed is None else probed)
        layers = conf.apply([write_end, *env.get("keep", ())])
        report: dict[str, Any] = {"layers": layers, "error": None, "errno": None}
        try:
            report["value"] = body(env)
        except BaseException as exc:
            report["error"] = type(exc).__name__
            report["errno"] = getattr(exc, "errno", None)
            report["message"] = str(exc)
        payload = json.dumps(report, default=repr)
    except BaseException as exc:
        payload = json.dumps({"setup_error": repr(exc), "oserror": isinstance(exc, OSError)})
    os.write(write_end, payload.encode())


def run_confined(
    body: Callable[[dict[str, Any]], Any],
    *,
    limits: Mapping[str, Any] = LIMITS,
    probed: Mapping[str, bool] | None = PROBED,
    as_nobody: bool = False,
    setup: Callable[[int], dict[str, Any]] | None = None,
) -> Outcome:
    """Fork a worker, confine it, run ``body`` in it and collect its report."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the worker
        try:
            os.close(read_end)
            _worker(write_end, body, limits, probed, as_nobody, setup)
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + WAIT_S
    data = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([read_end], [], [], left)[0]:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
    return Outcome(json.loads(data) if data else None, _reap(pid, deadline))


def _reap(pid: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture
def unix_listener() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        path = os.path.join(tmp, "sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            os.chmod(path, 0o777)
            server.listen()
            yield path


def _prctl_get(option: int) -> int:
    return int(_libc.prctl(option, 0, 0, 0, 0))


def _pdeathsig() -> int:
    value = ctypes.c_int(0)
    _libc.prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
    return value.value


# --- probe and construction ------------------------------------------------------


def test_probe_reports_exactly_the_documented_keys() -> None:
    assert set(PROBED) == {"rlimits", "prctl", "setuid", "landlock", "seccomp", "netns"}
    assert all(isinstance(v, bool) for v in PROBED.values())
    assert PROBED["rlimits"] and PROBED["prctl"]
    if not IS_ROOT:
        assert not PROBED["setuid"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("worker_uid", 0),
        ("worker_gid", 0),
        ("memory_limit_mb", 0),
        ("cpu_limit_s", 0),
        ("max_open_files", 0),
        ("max_file_size", -1),
        ("cpu_limit_s", True),
        ("cpu_limit_s", 1.5),
        ("max_open_files", None),
    ],
)
def test_bad_limits_are_refused_in_the_zygote(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=key):
        Confinement({**LIMITS, key: value}, PROBED)


def test_missing_limit_is_refused() -> None:
    limits = dict(LIMITS)
    del limits["max_file_size"]
    with pytest.raises(ValueError, match="max_file_size"):
        Confinement(limits, PROBED)


@pytest.mark.parametrize("keep", [[0], [1, 9], [2], [-1]])
def test_stdio_cannot_be_kept(keep: list[int]) -> None:
    # Checked before anything is touched, so this is safe in the test process.
    with pytest.raises(ValueError, match="keep_fds"):
        Confinement(LIMITS, PROBED).apply(keep)


def test_read_paths_cover_the_interpreter_and_not_the_root() -> None:
    paths = Confinement(LIMITS, PROBED).read_paths if PROBED["landlock"] else ()
    if not PROBED["landlock"]:
        pytest.skip("Landlock unavailable here")
    assert "/" not in paths
    real_prefix = os.path.realpath(sys.base_prefix)
    assert any(real_prefix == p or real_prefix.startswith(p + "/") for p in paths)
    assert "/dev/null" in paths


@pytest.mark.parametrize("machine", sorted(confine._ARCHES))
def test_filter_assembles_for_every_supported_arch(machine: str) -> None:
    insns, pid_slots = confine._assemble(confine._program(*confine._ARCHES[machine]))
    assert len(insns) < 4096  # BPF_MAXINSNS
    assert pid_slots
    assert all(insns[slot][0] == confine._JEQ_K for slot in pid_slots)


def _run_filter(insns: list[tuple[int, int, int, int]], nr: int, arch: int,
                args: tuple[int, ...] = (0,) * 6) -> tuple[int, int]:
    """Run a classic BPF seccomp program on one syscall: (return value, instructions)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    acc = pc = steps = 0
    while True:
        code, jt, jf, k = insns[pc]
        steps += 1
        pc += 1
        if code == confine._LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == confine._AND_K:
            acc &= k
        elif code == confine._JA:
            pc += k
        elif code == confine._RET_K:
            return k, steps
        else:
            taken = {confine._JEQ_K: acc == k, confine._JGE_K: acc >= k,
                     confine._JSET_K: bool(acc & k)}[code]
            pc += jt if taken else jf


@pytest.mark.parametrize("machine", sorted(confine._ARCHES))
def test_filter_decides_every_syscall_number_in_a_few_instructions(machine: str) -> None:
    audit_arch, nrs, has_x32 = confine._ARCHES[machine]
    insns, _slots = confine._assemble(confine._program(audit_arch, nrs, has_x32))
    allowed = {nrs[name] for name in confine._ALLOW if name in nrs}
    by_args = {nrs[name] for name in confine._BY_ARGS if name in nrs}
    eperm = confine._RET_ERRNO | errno.EPERM
    longest = 0
    for nr in range(1024):
        verdict, steps = _run_filter(insns, nr, audit_arch)
        if nr in allowed:
            assert verdict == confine._RET_ALLOW, nr
        elif nr not in by_args:
            assert verdict == eperm, nr
        longest = max(longest, steps)
        assert _run_filter(insns, nr, 0x40000003)[0] == confine._RET_KILL_PROCESS  # i386
    # The kernel runs the program for every number when a worker installs it.
    assert longest <= 40
    if has_x32:
        assert _run_filter(insns, confine._X32_SYSCALL_BIT | 1, audit_arch)[0] \
            == confine._RET_KILL_PROCESS
    clone = nrs["clone"]
    assert _run_filter(insns, clone, audit_arch, (confine._CLONE_THREAD, 0, 0, 0, 0, 0))[0] \
        == confine._RET_ALLOW
    assert _run_filter(insns, clone, audit_arch)[0] == eperm  # a fork


def _header_numbers(path: str) -> dict[str, int]:
    text = Path(path).read_text()
    found = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", text)}
    # asm-generic spells a few 64-bit names __NR3264_<name> (fstatat is newfstatat).
    for m in re.finditer(r"#define __NR3264_(\w+)\s+(\d+)", text):
        found[{"fstatat": "newfstatat"}.get(m[1], m[1])] = int(m[2])
    return found


@pytest.mark.parametrize(
    ("table", "header"),
    [
        ("_X86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
        ("_AARCH64", "/usr/include/asm-generic/unistd.h"),
    ],
)
def test_syscall_numbers_match_kernel_headers(table: str, header: str) -> None:
    if not os.path.exists(header):
        pytest.skip(f"{header} not installed")
    expected = _header_numbers(header)
    ours: dict[str, int] = getattr(confine, table)
    known = {name: nr for name, nr in ours.items() if name in expected}
    assert {name: expected[name] for name in known} == known
    # Only syscalls newer than the headers may be missing from them, and those
    # are numbered alike on every architecture.
    assert {n: ours[n] for n in set(ours) - set(expected)} == {
        n: v for n, v in confine._UNIFIED.items() if n not in expected}
    assert expected["landlock_create_ruleset"] == confine._NR_LANDLOCK_CREATE_RULESET
    assert expected["landlock_add_rule"] == confine._NR_LANDLOCK_ADD_RULE
    assert expected["landlock_restrict_self"] == confine._NR_LANDLOCK_RESTRICT_SELF


@pytest.mark.parametrize("table", ["_X86_64", "_AARCH64"])
def test_every_named_syscall_is_in_the_tables_where_it_exists(table: str) -> None:
    ours: dict[str, int] = getattr(confine, table)
    named = set(confine._ALLOW) | set(confine._BY_ARGS) | set(confine._DENIED_ON_PURPOSE)
    legacy = {  # x86_64 keeps the pre-*at calls; aarch64 (asm-generic) never had them
        "dup2", "pipe", "open", "stat", "lstat", "access", "readlink", "pause", "time",
        "alarm", "getpgrp", "poll", "select", "epoll_create", "epoll_wait", "eventfd",
        "fork", "vfork", "mknod", "inotify_init", "chmod", "chown", "lchown", "utime",
        "utimes", "futimesat", "unlink", "rename", "mkdir", "rmdir", "link", "symlink",
    }
    missing = named - set(ours)
    assert missing == (set() if table == "_X86_64" else legacy & named)
    assert not set(confine._ALLOW) & set(confine._BY_ARGS)
    assert not (set(confine._ALLOW) | set(confine._BY_ARGS)) & set(confine._DENIED_ON_PURPOSE)


# --- the generic layers ------------------------------------------------------------


def test_apply_returns_every_available_layer_in_order() -> None:
    expected = ["fds", "pgrp", "rlimits"]
    expected += ["setuid"] if PROBED["setuid"] else []
    expected += ["prctl"]
    expected += ["landlock"] if PROBED["landlock"] else []
    expected += ["seccomp"] if PROBED["seccomp"] else []
    outcome = run_confined(lambda env: None)
    assert outcome.error is None
    assert outcome.report is not None
    assert outcome.report["layers"] == expected


def test_inherited_fds_are_closed_and_stdio_is_dev_null() -> None:
    extra_r, extra_w = os.pipe()
    null = os.stat("/dev/null").st_rdev
    try:

        def body(env: dict[str, Any]) -> Any:
            open_extra = []
            for fd in (extra_r, extra_w):
                try:
                    os.fstat(fd)
                    open_extra.append(fd)
                except OSError:
                    pass
            return {
                "open_extra": open_extra,
                "stdio_null": [os.fstat(fd).st_rdev == null for fd in (0, 1, 2)],
                "own_group": os.getpgrp() == os.getpid(),
            }

        value = run_confined(body).value
    finally:
        os.close(extra_r)
        os.close(extra_w)
    assert value == {"open_extra": [], "stdio_null": [True, True, True], "own_group": True}


def test_rlimits_are_set_with_soft_equal_to_hard() -> None:
    def body(env: dict[str, Any]) -> Any:
        names = ("AS", "CPU", "FSIZE", "NOFILE", "CORE", "NPROC")
        return {n: resource.getrlimit(getattr(resource, f"RLIMIT_{n}")) for n in names}

    value = run_confined(body).value
    assert value["AS"] == [LIMITS["memory_limit_mb"] * 2**20] * 2
    assert value["CPU"] == [10, 10]
    assert value["FSIZE"] == [0, 0]
    assert value["NOFILE"] == [64, 64]
    assert value["CORE"] == [0, 0]
    assert value["NPROC"][0] == value["NPROC"][1] >= 64


def test_memory_floor_keeps_room_for_threads() -> None:
    def body(env: dict[str, Any]) -> Any:
        return resource.getrlimit(resource.RLIMIT_AS)[0]

    assert run_confined(body, limits={**LIMITS, "memory_limit_mb": 16}).value == 256 * 2**20


def test_user_code_cannot_raise_a_limit() -> None:
    def body(env: dict[str, Any]) -> Any:
        resource.setrlimit(resource.RLIMIT_CPU, (20, 20))

    outcome = run_confined(body)
    assert outcome.error in ("ValueError", "PermissionError")


def test_prctl_flags_are_set() -> None:
    def body(env: dict[str, Any]) -> Any:
        return {"nnp": _prctl_get(39), "dumpable": _prctl_get(3), "pdeathsig": _pdeathsig()}

    value = run_confined(body).value
    assert value == {"nnp": 1, "dumpable": 0, "pdeathsig": signal.SIGKILL}


def test_stdout_goes_to_dev_null() -> None:
    def body(env: dict[str, Any]) -> Any:
        return os.write(1, b"x")  # a character device: RLIMIT_FSIZE does not apply

    assert run_confined(body).value == 1


def test_max_file_size_zero_stops_writes_even_without_landlock() -> None:
    target = Path(tempfile.gettempdir()) / f"taskbox-confine-fsize-{os.getpid()}"

    def body(env: dict[str, Any]) -> Any:
        with open(target, "wb", buffering=0) as handle:
            return handle.write(b"x")

    try:
        outcome = run_confined(body, probed={**PROBED, "landlock": False})
        assert outcome.error == "OSError"
        assert outcome.errno == 27  # EFBIG; CPython ignores SIGXFSZ
    finally:
        target.unlink(missing_ok=True)


def test_worker_dies_with_its_parent() -> None:
    # PDEATHSIG must survive the uid drop (a credential change clears it).
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - a zygote that exits after one fork
        try:
            os.close(read_end)
            conf = Confinement(LIMITS, PROBED)
            applied_r, applied_w = os.pipe()
            if os.fork() == 0:
                conf.apply([write_end, applied_w])
                os.write(write_end, str(os.getpid()).encode())
                os.close(applied_w)
                time.sleep(WAIT_S)
                os.write(write_end, b" survived")
            else:
                os.close(applied_w)
                os.read(applied_r, 1)  # EOF once the worker is confined
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        first = os.read(read_end, 64)
        _reap(middle, time.monotonic() + WAIT_S)
        ready = select.select([read_end], [], [], WAIT_S)[0]
        rest = os.read(read_end, 64) if ready else b"timeout"
    finally:
        os.close(read_end)
    worker = int(first)
    assert rest == b""  # EOF: the worker was killed while sleeping
    with pytest.raises(ProcessLookupError):
        for _ in range(500):  # wait for init to reap it
            os.kill(worker, 0)
            time.sleep(0.01)


def test_worker_refuses_to_run_if_the_zygote_is_gone() -> None:
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - a zygote that exits right after forking
        try:
            os.close(read_end)
            conf = Confinement(LIMITS, PROBED)
            go_r, go_w = os.pipe()
            if os.fork() == 0:
                os.close(go_w)
                os.read(go_r, 1)  # EOF once the zygote has exited
                try:
                    conf.apply([write_end])
                    os.write(write_end, b"applied")
                    time.sleep(WAIT_S)
                    os.write(write_end, b" survived")
                except OSError as exc:
                    os.write(write_end, str(exc).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 2 * WAIT_S
    report = b""
    try:
        _reap(middle, deadline)
        while select.select([read_end], [], [], deadline - time.monotonic())[0]:
            chunk = os.read(read_end, 256)
            if not chunk:
                break
            report += chunk
    finally:
        os.close(read_end)
    # The check catches a parent that is gone; one still exiting when the
    # check ran delivers PDEATHSIG when it finishes, killing the worker (before
    # or after it reported "applied"). Never does it survive.
    assert report.startswith(b"[Errno 3] prctl: parent exited") or report in (b"applied", b"")


@pytest.mark.skipif(not PROBED["setuid"], reason="not root: no uid to drop")
def test_root_worker_drops_to_the_worker_uid() -> None:
    def body(env: dict[str, Any]) -> Any:
        return [os.getresuid(), os.getresgid(), os.getgroups()]

    assert run_confined(body).value == [[NOBODY] * 3, [NOBODY] * 3, []]


def test_a_layer_that_fails_raises_oserror_naming_it() -> None:
    # Claim a uid drop is possible while running as nobody.
    def body(env: dict[str, Any]) -> Any:
        return None

    outcome = run_confined(body, probed={**PROBED, "setuid": True}, as_nobody=True)
    assert outcome.report is not None
    assert outcome.report["oserror"] is True
    assert "setuid:" in outcome.report["setup_error"]


def test_cpu_limit_kills_a_busy_loop() -> None:
    def body(env: dict[str, Any]) -> Any:
        while True:
            pass

    outcome = run_confined(body, limits={**LIMITS, "cpu_limit_s": 1})
    assert outcome.report is None
    assert os.WIFSIGNALED(outcome.status)
    assert os.WTERMSIG(outcome.status) in (signal.SIGKILL, signal.SIGXCPU)


def test_allocating_twice_the_limit_raises_memory_error() -> None:
    def body(env: dict[str, Any]) -> Any:
        return len(bytearray(2 * 2048 * 2**20))

    assert run_confined(body).error == "MemoryError"


def test_shared_anonymous_memory_counts_against_the_limit() -> None:
    import mmap

    def body(env: dict[str, Any]) -> Any:
        return len(mmap.mmap(-1, 2 * 2048 * 2**20))  # RLIMIT_DATA would not count this

    outcome = run_confined(body)
    assert outcome.error == "OSError"
    assert outcome.errno == 12  # ENOMEM


# --- seccomp ----------------------------------------------------------------------


@needs_seccomp
def test_execv_is_blocked() -> None:
    outcome = run_confined(lambda env: os.execv("/bin/true", ["true"]))
    assert outcome.error == "PermissionError"


@needs_seccomp
def test_subprocess_is_blocked() -> None:
    outcome = run_confined(lambda env: subprocess.run(["/bin/true"], check=False).returncode)
    assert outcome.error == "PermissionError"


@needs_seccomp
def test_posix_spawn_is_blocked() -> None:
    outcome = run_confined(lambda env: os.posix_spawn("/bin/true", ["true"], {}))
    assert outcome.error == "PermissionError"


@needs_seccomp
def test_fork_is_blocked() -> None:
    def body(env: dict[str, Any]) -> Any:
        if os.fork() == 0:
            os._exit(0)
        return "forked"

    outcome = run_confined(body)
    assert outcome.error == "PermissionError"


@needs_seccomp
def test_threads_still_work() -> None:
    def body(env: dict[str, Any]) -> Any:
        results: list[int] = []
        threads = [threading.Thread(target=results.append, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sorted(results)

    assert run_confined(body).value == list(range(8))


@needs_seccomp
@pytest.mark.parametrize(
    ("family", "kind"),
    [
        (socket.AF_INET, socket.SOCK_STREAM),
        (socket.AF_INET, socket.SOCK_DGRAM),
        (socket.AF_INET6, socket.SOCK_STREAM),
        (socket.AF_NETLINK, socket.SOCK_RAW),
        (socket.AF_PACKET, socket.SOCK_RAW),
    ],
)
def test_non_unix_sockets_are_blocked(family: int, kind: int) -> None:
    outcome = run_confined(lambda env: socket.socket(family, kind).fileno())
    assert outcome.error == "PermissionError"


@needs_seccomp
def test_unix_socketpair_works() -> None:
    def body(env: dict[str, Any]) -> Any:
        left, right = socket.socketpair()
        left.sendall(b"ping")
        return right.recv(4).decode()

    assert run_confined(body).value == "ping"


@needs_seccomp
def test_unix_datagram_sockets_are_blocked() -> None:
    # A datagram socket could sendto() any pathname socket, connect or not.
    outcome = run_confined(lambda env: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM))
    assert outcome.error == "PermissionError"


@needs_seccomp
def test_connect_to_a_unix_path_is_blocked(unix_listener: str) -> None:
    def body(env: dict[str, Any]) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(unix_listener)

    assert run_confined(body).error == "PermissionError"


@needs_seccomp
def test_tcp_connect_to_a_loopback_listener_fails(tcp_listener: int) -> None:
    def body(env: dict[str, Any]) -> Any:
        socket.create_connection(("127.0.0.1", tcp_listener), timeout=2).close()

    assert run_confined(body).error == "PermissionError"


@needs_seccomp
def test_kill_parent_fails_and_kill_self_works() -> None:
    def body(env: dict[str, Any]) -> Any:
        os.kill(os.getpid(), 0)  # must not raise
        os.kill(os.getppid(), 0)

    outcome = run_confined(body)
    assert outcome.error == "PermissionError"


@needs_seccomp
@pytest.mark.parametrize("target", [0, -1])
def test_kill_of_groups_and_everyone_fails(target: int) -> None:
    outcome = run_confined(lambda env: os.kill(target, 0))
    assert outcome.error == "PermissionError"


@needs_seccomp
def test_raise_signal_to_self_works() -> None:
    def body(env: dict[str, Any]) -> Any:
        got: list[int] = []
        signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
        signal.raise_signal(signal.SIGUSR1)
        return got

    assert run_confined(body).value == [signal.SIGUSR1]


@needs_seccomp
def test_memfd_create_is_blocked() -> None:
    assert run_confined(lambda env: os.memfd_create("x")).error == "PermissionError"


@needs_seccomp
def test_prlimit_on_the_parent_is_blocked() -> None:
    def body(env: dict[str, Any]) -> Any:
        return resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE)

    assert run_confined(body).error == "PermissionError"


@needs_seccomp
@pytest.mark.parametrize("call", ["setsid", "setpgid"])
def test_worker_cannot_leave_its_process_group(call: str) -> None:
    def body(env: dict[str, Any]) -> Any:
        return os.setsid() if call == "setsid" else os.setpgid(0, 0)

    assert run_confined(body).error == "PermissionError"


@needs_seccomp
def test_prctl_flags_cannot_be_undone() -> None:
    def body(env: dict[str, Any]) -> Any:
        results = [int(_libc.prctl(4, 1, 0, 0, 0)), int(_libc.prctl(1, 0, 0, 0, 0))]
        return [results, ctypes.get_errno(), _prctl_get(3), _pdeathsig()]

    value = run_confined(body).value
    assert value == [[-1, -1], 1, 0, signal.SIGKILL]


# --- Landlock -------------------------------------------------------------------------


@needs_landlock
@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/self/environ", "/proc/self/status"])
def test_reading_outside_the_allowed_trees_fails(path: str) -> None:
    def body(env: dict[str, Any]) -> Any:
        with open(path, "rb") as handle:
            return len(handle.read())

    outcome = run_confined(body)
    assert outcome.error == "PermissionError"


@needs_landlock
def test_reading_the_parents_environ_fails() -> None:
    path = f"/proc/{os.getpid()}/environ"
    outcome = run_confined(lambda env: len(Path(path).read_bytes()))
    assert outcome.error == "PermissionError"


@needs_landlock
def test_listing_the_root_fails() -> None:
    assert run_confined(lambda env: os.listdir("/")).error == "PermissionError"


@needs_landlock
def test_writing_a_file_in_tmp_fails() -> None:
    target = Path(tempfile.gettempdir()) / f"taskbox-confine-{os.getpid()}-{time.monotonic_ns()}"
    outcome = run_confined(lambda env: target.write_text("x"))
    assert outcome.error == "PermissionError"
    assert not target.exists()


@needs_landlock
def test_anonymous_tmpfile_fails() -> None:
    outcome = run_confined(lambda env: os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600))
    assert outcome.error == "PermissionError"


def _stdlib_reachable_by_nobody() -> bool:
    """Whether uid 65534 may search every directory down to the stdlib."""
    path = Path(os.path.realpath(os.path.dirname(os.__file__)))
    return all(directory.stat().st_mode & stat.S_IXOTH for directory in (path, *path.parents))


@needs_sandbox
def test_lazy_stdlib_imports_still_work() -> None:
    # As root the worker drops to 65534; if plain file permissions already
    # hide the interpreter from that uid (a pyenv under /root, mode 0700),
    # a lazy import fails for reasons unrelated to this module, so keep the
    # uid then and test only what Landlock and seccomp allow.
    probed = dict(PROBED)
    if PROBED["setuid"] and not _stdlib_reachable_by_nobody():
        probed["setuid"] = False

    def setup(write_end: int) -> dict[str, Any]:
        for name in ("decimal", "_decimal", "_pydecimal", "csv", "_csv"):
            sys.modules.pop(name, None)
        return {}

    def body(env: dict[str, Any]) -> Any:
        import csv
        import decimal
        import io

        rows = list(csv.reader(io.StringIO("a,b\n1,2\n")))
        return [str(decimal.Decimal("1.10") + decimal.Decimal("2.205")), rows]

    outcome = run_confined(body, probed=probed, setup=setup)
    assert outcome.value == ["3.305", [["a", "b"], ["1", "2"]]]


@needs_sandbox
def test_json_and_datetime_work() -> None:
    def body(env: dict[str, Any]) -> Any:
        now = datetime.datetime.now(datetime.UTC)
        later = now + datetime.timedelta(days=1)
        return json.loads(json.dumps({"delta": (later - now).total_seconds()}))

    assert run_confined(body).value == {"delta": 86400.0}


@needs_landlock
@pytest.mark.skipif(LANDLOCK_ABI < 4, reason="Landlock ABI < 4: no TCP rules")
def test_landlock_alone_blocks_tcp_connect(tcp_listener: int) -> None:
    def body(env: dict[str, Any]) -> Any:
        socket.create_connection(("127.0.0.1", tcp_listener), timeout=2).close()

    outcome = run_confined(body, probed={**PROBED, "seccomp": False})
    assert outcome.error == "PermissionError"
    assert outcome.errno == 13  # EACCES: Landlock, not seccomp's EPERM


@needs_landlock
@pytest.mark.skipif(LANDLOCK_ABI < 6, reason="Landlock ABI < 6: no signal scoping")
def test_landlock_alone_scopes_signals() -> None:
    outcome = run_confined(
        lambda env: os.kill(os.getppid(), 0), probed={**PROBED, "seccomp": False}
    )
    assert outcome.error == "PermissionError"


# --- a non-root runner (default Docker: no caps, no namespaces needed) --------------


def _spawn_sibling(write_end: int) -> dict[str, Any]:
    """A same-uid, dumpable process the worker must not touch; exits with the worker."""
    read_end, keep = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the sibling
        try:
            os.close(write_end)
            os.close(keep)
            os.close(ready_r)
            _libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: readable by its uid
            os.close(ready_w)
            os.read(read_end, 1)  # EOF when the worker exits
        finally:
            os._exit(0)
    os.close(read_end)
    os.close(ready_w)
    os.read(ready_r, 1)  # EOF once the sibling is dumpable
    os.close(ready_r)
    return {"sibling": pid, "keep": [keep]}


@needs_sandbox
def test_non_root_probe_and_layers() -> None:
    def body(env: dict[str, Any]) -> Any:
        return os.getresuid()

    outcome = run_confined(body, probed=None, as_nobody=True)
    assert outcome.value == [NOBODY] * 3 if IS_ROOT else [os.getuid()] * 3
    assert outcome.report is not None
    assert outcome.report["layers"] == ["fds", "pgrp", "rlimits", "prctl", "landlock", "seccomp"]


def _attempt(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "allowed"


@needs_sandbox
def test_non_root_worker_is_confined() -> None:
    scratch = Path(tempfile.gettempdir()) / f"taskbox-confine-nr-{os.getpid()}"

    def fork_once() -> None:
        if os.fork() == 0:
            os._exit(0)

    def body(env: dict[str, Any]) -> Any:
        sibling = env["sibling"]
        return {
            "fork": _attempt(fork_once),
            "exec": _attempt(lambda: os.execv("/bin/true", ["true"])),
            "inet": _attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
            "passwd": _attempt(lambda: Path("/etc/passwd").read_bytes()),
            "tmp_write": _attempt(lambda: scratch.write_text("x")),
            "kill_sibling": _attempt(lambda: os.kill(sibling, 0)),
            "sibling_environ": _attempt(lambda: Path(f"/proc/{sibling}/environ").read_bytes()),
            "sibling_prlimit": _attempt(lambda: resource.prlimit(sibling, resource.RLIMIT_CPU)),
            "kill_self": _attempt(lambda: os.kill(os.getpid(), 0)),
        }

    value = run_confined(body, probed=None, as_nobody=True, setup=_spawn_sibling).value
    assert value == {
        "fork": "PermissionError",
        "exec": "PermissionError",
        "inet": "PermissionError",
        "passwd": "PermissionError",
        "tmp_write": "PermissionError",
        "kill_sibling": "PermissionError",
        "sibling_environ": "PermissionError",
        "sibling_prlimit": "PermissionError",
        "kill_self": "allowed",
    }
    assert not scratch.exists()


@needs_landlock
def test_non_root_sibling_is_reachable_without_confinement() -> None:
    # Control for the test above: the same actions work when nothing is applied.
    def body(env: dict[str, Any]) -> Any:
        sibling = env["sibling"]
        return [
            _attempt(lambda: os.kill(sibling, 0)),
            _attempt(lambda: Path(f"/proc/{sibling}/environ").read_bytes()),
        ]

    none = dict.fromkeys(PROBED, False)
    value = run_confined(body, probed=none, as_nobody=True, setup=_spawn_sibling).value
    assert value == ["allowed", "allowed"]


# --- the allowlist: issue 11's findings, each tried for real ----------------------


def _raw(name: str, *args: Any) -> tuple[int, int]:
    """(return value, errno) of a raw syscall by name on this machine's table."""
    arch = confine._arch()
    assert arch is not None
    ctypes.set_errno(0)
    result = int(_libc.syscall(ctypes.c_long(arch[1][name]), *args))
    return result, ctypes.get_errno()


_CTX = ctypes.c_ulong(0)
_RAW_CALLS: dict[str, Callable[[], tuple[int, int]]] = {
    # Linux AIO: its budget (fs.aio-max-nr) is host-wide.
    "io_setup": lambda: _raw("io_setup", ctypes.c_uint(64), ctypes.byref(_CTX)),
    "fanotify_init": lambda: _raw("fanotify_init", ctypes.c_uint(0), ctypes.c_uint(0)),
    "inotify_init1": lambda: _raw("inotify_init1", ctypes.c_int(0)),
    "file_setattr": lambda: _raw("file_setattr", ctypes.c_int(-100), b"/", None,
                                 ctypes.c_size_t(0), ctypes.c_uint(0)),
    "setxattrat": lambda: _raw("setxattrat", ctypes.c_int(-100), b"/", ctypes.c_uint(0),
                               b"user.x", None, ctypes.c_size_t(0)),
    "io_uring_setup": lambda: _raw("io_uring_setup", ctypes.c_uint(1), None),
    "cachestat": lambda: _raw("cachestat", ctypes.c_uint(0), None, None, ctypes.c_uint(0)),
}


@needs_seccomp
@pytest.mark.parametrize("name", sorted(_RAW_CALLS))
def test_host_wide_and_unlisted_syscalls_fail_with_eperm(name: str) -> None:
    assert run_confined(lambda env: _RAW_CALLS[name]()).value == [-1, 1]  # EPERM


def test_io_setup_works_without_the_filter() -> None:
    # Control: the call is real here, so the EPERM above is the filter's.
    result, err = run_confined(lambda env: _RAW_CALLS["io_setup"](),
                               probed={**PROBED, "seccomp": False}).value
    assert (result, err) == (0, 0) or err not in (0, 1), (result, err)


_METADATA_CALLS: dict[str, Callable[[str], object]] = {
    "chmod": lambda p: os.chmod(p, 0o4777),
    "chown": lambda p: os.chown(p, os.getuid(), os.getgid()),
    "utime": lambda p: os.utime(p, (0, 0)),
    "setxattr": lambda p: os.setxattr(p, "user.taskbox", b"1"),
    "getxattr": lambda p: os.getxattr(p, "user.taskbox"),
    "listxattr": lambda p: os.listxattr(p),
}


@needs_seccomp
@pytest.mark.parametrize("call", sorted(_METADATA_CALLS))
def test_metadata_of_files_the_worker_owns_cannot_change(call: str) -> None:
    # Landlock does not cover these calls; as non-root the runner's own files have
    # the worker's uid, so only seccomp stops chmod +s, chown, utime and xattrs
    # (a channel from one task to the next).
    fd, path = tempfile.mkstemp(prefix="taskbox-confine-owned-")
    os.close(fd)
    try:
        if IS_ROOT:
            os.chown(path, NOBODY, NOBODY)
        outcome = run_confined(lambda env: _METADATA_CALLS[call](path), probed=None,
                               as_nobody=True)
        assert outcome.error == "PermissionError", outcome.report
        assert outcome.errno == 1
        assert os.stat(path).st_mode & 0o7777 == 0o600
    finally:
        os.unlink(path)


@needs_seccomp
@pytest.mark.parametrize("step", ["bind", "listen", "accept"])
def test_no_worker_can_bind_listen_or_accept(step: str) -> None:
    def body(env: dict[str, Any]) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            if step == "bind":
                server.bind("\0taskbox-squat")  # an abstract name another service expects
            elif step == "listen":
                server.listen()  # would autobind an abstract name
            else:
                left, _right = socket.socketpair()
                left.accept()

    assert run_confined(body).error == "PermissionError"


@needs_seccomp
def test_msg_oob_is_refused_on_unix_sockets() -> None:
    def body(env: dict[str, Any]) -> Any:
        left, right = socket.socketpair()
        left.send(b"in band")
        outcome: list[Any] = [right.recv(16).decode()]
        for attempt in (lambda: left.send(b"!", socket.MSG_OOB),
                        lambda: right.recv(1, socket.MSG_OOB),
                        lambda: left.sendmsg([b"!"], [], socket.MSG_OOB)):
            try:
                attempt()
                outcome.append("allowed")
            except OSError as exc:
                outcome.append(exc.errno)
        return outcome

    assert run_confined(body).value == ["in band", 1, 1, 1]


@needs_seccomp
@pytest.mark.parametrize("request_", [0x5402, 0x5412, 0x541C, 0x4B3A])  # TCSETS TIOCSTI ...
def test_device_ioctls_are_refused(request_: int) -> None:
    def body(env: dict[str, Any]) -> Any:
        fd = os.open("/dev/null", os.O_RDONLY)
        return [int(_libc.ioctl(fd, ctypes.c_ulong(request_), None)), ctypes.get_errno()]

    assert run_confined(body).value == [-1, 1]


@needs_seccomp
def test_harmless_fd_calls_still_work() -> None:
    def body(env: dict[str, Any]) -> Any:
        left, _right = socket.socketpair()
        left.setblocking(False)  # ioctl(FIONBIO) or fcntl(F_SETFL)
        read_end, write_end = os.pipe()
        os.set_inheritable(read_end, True)  # ioctl(FIONCLEX) / fcntl(F_SETFD)
        return [left.getblocking(), os.isatty(read_end), os.get_inheritable(read_end),
                os.get_blocking(write_end)]

    assert run_confined(body).value == [False, False, True, True]


@needs_seccomp
def test_file_locks_are_refused() -> None:
    import fcntl

    def body(env: dict[str, Any]) -> Any:
        fd = os.open("/dev/null", os.O_RDONLY)
        return _attempt(lambda: fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB))

    assert run_confined(body, probed={**PROBED, "landlock": False}).value == "PermissionError"


@needs_landlock
def test_landlock_alone_lets_a_worker_chmod_its_uids_files() -> None:
    # Control for the metadata test: this is why the allowlist must deny it.
    fd, path = tempfile.mkstemp(prefix="taskbox-confine-owned-")
    os.close(fd)
    try:
        if IS_ROOT:
            os.chown(path, NOBODY, NOBODY)
        value = run_confined(lambda env: os.chmod(path, 0o640), probed={
            **PROBED, "setuid": False, "seccomp": False}, as_nobody=True).value
        assert value is None
        assert os.stat(path).st_mode & 0o777 == 0o640
    finally:
        os.unlink(path)
