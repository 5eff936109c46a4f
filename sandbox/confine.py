"""OS confinement of one worker process, applied before it reads any user code.

This module owns every kernel-level layer of the sandbox: closing inherited
fds, the process group, rlimits, the uid drop, prctl flags, Landlock and a
hand-rolled seccomp BPF filter. It shares a process with hostile code, so it
imports only the stdlib (ctypes for prctl and raw syscalls), never imports
``taskbox`` and logs nothing. Errors surface as exceptions only.

Split of work (measured costs: /work/shared/docs/sandbox-security.md, §1):

* ``probe()`` runs once in the zygote and tries each layer in a throw-away
  child, so a layer is reported only if it really installs here.
* ``Confinement.__init__`` runs once in the zygote: it validates the limits,
  resolves libc symbols, assembles the seccomp program and computes the
  Landlock path list.
* ``Confinement.apply()`` runs in each freshly forked worker and only issues
  syscalls, patching the worker's pid into the pre-built filter.

Deliberately not done:

* ``netns``: ``probe()`` reports whether ``unshare(CLONE_NEWUSER |
  CLONE_NEWNET)`` works, but ``apply()`` never uses it. It would cost about
  0.6 ms (more than every other layer together), the seccomp socket rule and
  Landlock's TCP rules already cut the network off, and a user namespace
  hands the worker a full capability set inside it: kernel attack surface for
  no gain.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Confinement", "probe"]

# --- prctl(2) -----------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2

# --- Landlock (linux/landlock.h; ABI history in landlock(7)) -----------------

# Syscalls numbered 424 and up are the same on every architecture.
_NR_LANDLOCK_CREATE_RULESET = 444
_NR_LANDLOCK_ADD_RULE = 445
_NR_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
# Every filesystem right the kernel knows, by ABI: ABI 1 has bits 0-12,
# ABI 2 adds REFER (13), ABI 3 TRUNCATE (14), ABI 5 IOCTL_DEV (15).
_FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_FS_ALL_LATEST = (1 << 16) - 1
# Rights that may be granted on a non-directory (the kernel rejects others).
_FS_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1  # ABI 6

# Read-only trees a worker needs besides sys.prefix & co. and sys.path.
_SYSTEM_READ_DIRS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo")
_DEVICE_FILES = (("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE), ("/dev/urandom", _FS_READ_FILE))

# --- seccomp / classic BPF (linux/seccomp.h, linux/filter.h) ----------------

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]. Only the low
# 32-bit word of an argument is loaded: every argument checked below is an
# int (pid_t, domain, flags) that the kernel truncates to 32 bits itself.
_OFF_NR = 0
_OFF_ARCH = 4


def _off_arg(index: int) -> int:
    return 16 + 8 * index  # little-endian: the low word comes first


_X32_SYSCALL_BIT = 0x40000000
_CLONE_THREAD = 0x00010000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET, the
# mask Docker's default profile uses for clone.
_CLONE_NAMESPACES = 0x7E020000
_AF_UNIX = 1
_SOCK_TYPE_MASK = 0xF
_SOCK_STREAM = 1
_SOCK_SEQPACKET = 5
_PRIO_PROCESS = 0
_IOPRIO_WHO_PROCESS = 1

# Syscall numbers, from asm/unistd_64.h and asm-generic/unistd.h (the tests
# re-check them against the headers when those are installed).
_X86_64: dict[str, int] = {
    "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272, "setns": 308,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250, "add_key": 248,
    "request_key": 249, "personality": 135, "pidfd_open": 434, "pidfd_getfd": 438,
    "pidfd_send_signal": 424, "process_madvise": 440, "process_mrelease": 448,
    "mknod": 133, "mknodat": 259, "memfd_create": 319, "memfd_secret": 447,
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
    "mount_setattr": 442, "open_by_handle_at": 304, "kcmp": 312, "syslog": 103,
    "connect": 42, "setsid": 112, "setpgid": 109, "shmget": 29, "shmat": 30,
    "shmctl": 31, "shmdt": 67, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
    "semget": 64, "semop": 65, "semctl": 66, "semtimedop": 220, "mq_open": 240,
    "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244,
    "mq_getsetattr": 245, "acct": 163, "quotactl": 179, "iopl": 172, "ioperm": 173,
    "modify_ldt": 154, "uselib": 134, "migrate_pages": 256, "move_pages": 279,
    "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
    "sethostname": 170, "setdomainname": 171, "clone": 56, "clone3": 435, "socket": 41,
    "socketpair": 53, "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297, "prlimit64": 302, "sched_setaffinity": 203,
    "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314,
    "setpriority": 141, "ioprio_set": 251, "prctl": 157,
}  # fmt: skip
_AARCH64: dict[str, int] = {
    "execve": 221, "execveat": 281, "ptrace": 117, "process_vm_readv": 270,
    "process_vm_writev": 271, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
    "pivot_root": 41, "chroot": 51, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219,
    "add_key": 217, "request_key": 218, "personality": 92, "pidfd_open": 434,
    "pidfd_getfd": 438, "pidfd_send_signal": 424, "process_madvise": 440,
    "process_mrelease": 448, "mknodat": 33, "memfd_create": 279, "memfd_secret": 447,
    "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
    "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
    "mount_setattr": 442, "open_by_handle_at": 265, "kcmp": 272, "syslog": 116,
    "connect": 203, "setsid": 157, "setpgid": 154, "shmget": 194, "shmat": 196,
    "shmctl": 195, "shmdt": 197, "msgget": 186, "msgsnd": 189, "msgrcv": 188,
    "msgctl": 187, "semget": 190, "semop": 193, "semctl": 191, "semtimedop": 192,
    "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182, "mq_timedreceive": 183,
    "mq_notify": 184, "mq_getsetattr": 185, "acct": 89, "quotactl": 60,
    "migrate_pages": 238, "move_pages": 239, "settimeofday": 170, "clock_settime": 112,
    "adjtimex": 171, "clock_adjtime": 266, "sethostname": 161, "setdomainname": 162,
    "clone": 220, "clone3": 435, "socket": 198, "socketpair": 199, "kill": 129,
    "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
    "prlimit64": 261, "sched_setaffinity": 122, "sched_setscheduler": 119,
    "sched_setparam": 118, "sched_setattr": 274, "setpriority": 140, "ioprio_set": 30,
    "prctl": 167,
}  # fmt: skip
# machine -> (AUDIT_ARCH_* value, syscall table, whether x32 numbers exist)
_ARCHES: dict[str, tuple[int, dict[str, int], bool]] = {
    "x86_64": (0xC000003E, _X86_64, True),
    "aarch64": (0xC00000B7, _AARCH64, False),
}

# Denied with EPERM outright. Beyond the list: the new mount API,
# SysV IPC and POSIX message queues (objects that outlive the worker and are
# shared by every worker of the same uid), connect (no AF_UNIX peer is needed:
# socketpair is; this keeps D-Bus, journald and nscd sockets out of reach),
# setsid/setpgid (the parent kills the worker's process group), calls that act
# on other processes' memory, and privileged calls, for the degraded case of a
# root worker that could not drop its uid.
_DENY_EPERM = (
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv",
    "process_vm_writev", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "personality", "pidfd_open",
    "pidfd_getfd", "pidfd_send_signal", "process_madvise", "process_mrelease", "kcmp",
    "migrate_pages", "move_pages", "mknod", "mknodat", "memfd_create", "memfd_secret",
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semget", "semop", "semctl", "semtimedop", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr", "connect", "setsid", "setpgid",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "open_by_handle_at", "syslog", "acct", "quotactl",
    "iopl", "ioperm", "modify_ldt", "uselib", "settimeofday", "clock_settime", "adjtimex",
    "clock_adjtime", "sethostname", "setdomainname",
)  # fmt: skip
# Syscalls whose arguments decide; value = handler label in _program().
_BY_ARGS = {
    "clone": "clone",
    "clone3": "enosys",  # glibc then falls back to clone, whose flags BPF can read
    "socket": "socket",
    "socketpair": "socket",
    "kill": "self",
    "tkill": "self",
    "tgkill": "self",
    "rt_sigqueueinfo": "self",
    "rt_tgsigqueueinfo": "self",
    "prlimit64": "self_or_0",
    "sched_setaffinity": "self_or_0",
    "sched_setscheduler": "self_or_0",
    "sched_setparam": "self_or_0",
    "sched_setattr": "self_or_0",
    "setpriority": "prio",
    "ioprio_set": "ioprio",
    "prctl": "prctl",
}

_OWN_PID = -1  # placeholder k, patched with the worker's pid in apply()

# An instruction before assembly: (code, jt, jf, k); a jump is 0 (fall
# through) or a label. A bare string is a label definition.
_Insn = tuple[int, int | str, int | str, int]


def _ld(offset: int) -> _Insn:
    return (_LD_W_ABS, 0, 0, offset)


def _jeq(k: int, jt: int | str, jf: int | str) -> _Insn:
    return (_JEQ_K, jt, jf, k)


def _ret(k: int) -> _Insn:
    return (_RET_K, 0, 0, k)


def _program(audit_arch: int, nrs: Mapping[str, int], has_x32: bool) -> list[_Insn | str]:
    """The whole policy as a readable listing; default allow."""
    listed = [name for name in (*_DENY_EPERM, *_BY_ARGS) if name in nrs]
    prog: list[_Insn | str] = [
        _ld(_OFF_ARCH),
        _jeq(audit_arch, 0, "kill"),  # foreign ABI (i386 int 0x80, arm32): kill
        _ld(_OFF_NR),
    ]
    if has_x32:
        prog.append((_JGE_K, "kill", 0, _X32_SYSCALL_BIT))
    # Hot syscalls (read, write, mmap ... on x86_64) sort below every listed one.
    prog.append((_JGE_K, 0, "allow", min(nrs[name] for name in listed)))
    prog += [_jeq(nrs[name], "eperm", 0) for name in _DENY_EPERM if name in nrs]
    prog += [_jeq(nrs[name], label, 0) for name, label in _BY_ARGS.items() if name in nrs]
    prog += [
        _ret(_RET_ALLOW),
        "clone",  # threads only, and no namespace flags with them
        _ld(_off_arg(0)),
        (_JSET_K, 0, "eperm", _CLONE_THREAD),
        (_JSET_K, "eperm", "allow", _CLONE_NAMESPACES),
        "socket",  # AF_UNIX stream/seqpacket: no datagrams, which could sendto() a path
        _ld(_off_arg(0)),
        _jeq(_AF_UNIX, 0, "eperm"),
        _ld(_off_arg(1)),
        (_AND_K, 0, 0, _SOCK_TYPE_MASK),
        _jeq(_SOCK_STREAM, "allow", 0),
        _jeq(_SOCK_SEQPACKET, "allow", "eperm"),
        "self",  # signals: arg0 must be this worker (not 0, not a group)
        _ld(_off_arg(0)),
        _jeq(_OWN_PID, "allow", "eperm"),
        "self_or_0",  # per-process knobs: pid 0 means "me"
        _ld(_off_arg(0)),
        _jeq(0, "allow", 0),
        _jeq(_OWN_PID, "allow", "eperm"),
        "prio",
        _ld(_off_arg(0)),
        _jeq(_PRIO_PROCESS, "who", "eperm"),
        "ioprio",
        _ld(_off_arg(0)),
        _jeq(_IOPRIO_WHO_PROCESS, "who", "eperm"),
        "who",
        _ld(_off_arg(1)),
        _jeq(0, "allow", 0),
        _jeq(_OWN_PID, "allow", "eperm"),
        "prctl",  # keep DUMPABLE=0 and PDEATHSIG as set
        _ld(_off_arg(0)),
        _jeq(_PR_SET_DUMPABLE, "eperm", 0),
        _jeq(_PR_SET_PDEATHSIG, "eperm", "allow"),
        "enosys",
        _ret(_RET_ERRNO | errno.ENOSYS),
        "eperm",
        _ret(_RET_ERRNO | errno.EPERM),
        "allow",
        _ret(_RET_ALLOW),
        "kill",
        _ret(_RET_KILL_PROCESS),
    ]
    return prog


def _assemble(prog: Sequence[_Insn | str]) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """Resolve labels to 8-bit forward offsets; return insns and own-pid slots."""
    labels: dict[str, int] = {}
    insns: list[_Insn] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def offset(at: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        distance = labels[target] - at - 1
        if not 0 <= distance <= 255:
            raise ValueError(f"seccomp: jump to {target!r} out of range ({distance})")
        return distance

    out: list[tuple[int, int, int, int]] = []
    pid_slots: list[int] = []
    for at, (code, jt, jf, k) in enumerate(insns):
        if k == _OWN_PID:
            pid_slots.append(at)
            k = 0
        out.append((code, offset(at, jt), offset(at, jf), k))
    return out, pid_slots


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel struct is __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


# --- libc ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int
_syscall = _libc.syscall  # variadic: callers pass ctypes values
_syscall.restype = ctypes.c_long


def _checked(result: int, what: str) -> int:
    """Raise OSError with errno if a libc call returned -1."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _prctl_set(option: int, value: int) -> None:
    _checked(int(_prctl(option, value, 0, 0, 0)), f"prctl({option})")


def _arch() -> tuple[int, dict[str, int], bool] | None:
    """Our syscall ABI, or None if seccomp is unsupported for it."""
    if ctypes.sizeof(ctypes.c_void_p) != 8 or sys.byteorder != "little":
        return None  # a 32-bit or big-endian interpreter: numbers and offsets differ
    return _ARCHES.get(os.uname().machine)


def _landlock_abi() -> int:
    """Landlock ABI version (0 if unavailable)."""
    version = int(
        _syscall(
            ctypes.c_long(_NR_LANDLOCK_CREATE_RULESET),
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
        )
    )
    return max(version, 0)


def _build_filter(
    arch: tuple[int, dict[str, int], bool],
) -> tuple[ctypes.Array[_SockFilter], list[int]]:
    insns, pid_slots = _assemble(_program(*arch))
    array = (_SockFilter * len(insns))(*(_SockFilter(*insn) for insn in insns))
    return array, pid_slots


def _install_filter(fprog: _SockFprog) -> None:
    _checked(
        int(_prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0)),
        "seccomp install",
    )


# --- probe --------------------------------------------------------------------


def _has_setuid_caps() -> bool:
    """Root with CAP_SETUID and CAP_SETGID (capability bits 7 and 6)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16) & 0xC0 == 0xC0
    except OSError:
        pass
    return True  # no /proc: assume a plain root; apply() would fail loudly


def _probe_child(report: int) -> None:
    """In a throw-away child: try Landlock, netns and seccomp; write a byte for each."""
    arch = _arch()
    _prctl_set(_PR_SET_NO_NEW_PRIVS, 1)
    if _landlock_abi() >= 1:
        with contextlib.suppress(OSError):
            _landlock_enforce(_landlock_create(_RulesetAttr(_FS_READ_FILE, 0, 0), 8))
            os.write(report, b"l")
    if arch is not None:
        flags = 0x10000000 | 0x40000000  # CLONE_NEWUSER | CLONE_NEWNET
        if int(_syscall(ctypes.c_long(arch[1]["unshare"]), ctypes.c_ulong(flags))) == 0:
            os.write(report, b"n")
        # Install the real program last (it denies unshare) and check one
        # allowed and one denied call; a wrong arch value kills us here.
        array, pid_slots = _build_filter(arch)
        for slot in pid_slots:
            array[slot].k = os.getpid()
        _install_filter(_SockFprog(len(array), array))
        os.kill(os.getpid(), 0)
        denied = int(_syscall(ctypes.c_long(arch[1]["memfd_create"]), b"probe", ctypes.c_uint(0)))
        if denied == -1 and ctypes.get_errno() == errno.EPERM:
            os.write(report, b"s")


def probe() -> dict[str, bool]:
    """Which layers this kernel and process can apply.

    Cheap (one fork); call once at zygote start-up. Landlock, seccomp and
    netns are tried for real in a throw-away child, so a True means the
    layer installs here, not just that the kernel was built with it.

    Returns:
        ``rlimits``, ``prctl``, ``setuid`` (root with CAP_SETUID/CAP_SETGID,
        so a uid drop is possible), ``landlock``, ``seccomp`` and ``netns``
        (``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` works; never applied, see
        the module docstring).
    """
    found = b""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            _probe_child(write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        while chunk := os.read(read_end, 16):
            found += chunk
    finally:
        os.close(read_end)
        with contextlib.suppress(ChildProcessError):  # reaped by a SIGCHLD handler
            os.waitpid(pid, 0)
    return {
        "rlimits": all(
            hasattr(resource, f"RLIMIT_{n}")
            for n in ("AS", "CPU", "FSIZE", "NOFILE", "CORE", "NPROC")
        ),
        "prctl": int(_prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)) >= 0,
        "setuid": _has_setuid_caps(),
        "landlock": b"l" in found,
        "seccomp": b"s" in found,
        "netns": b"n" in found,
    }


# --- confinement ----------------------------------------------------------------

_MIB = 1024 * 1024
# RLIMIT_AS rather than RLIMIT_DATA: DATA does not count MAP_SHARED anonymous
# memory (what mmap.mmap(-1, n) creates), so it would not bound that at all.
# AS also counts each thread's 8 MiB stack reservation, hence the floor
# (sandbox-security.md §1.1: at 64 MiB the 5th thread already failed).
_MIN_ADDRESS_SPACE_MB = 256
# RLIMIT_NPROC counts every process and thread of the worker's uid on the
# host (or container), not just this task, so it cannot be tight. Fork is
# denied by seccomp and threads are bounded by RLIMIT_AS; this is a backstop
# for kernels without seccomp.
_MAX_PROCESSES = 256


def _int_limit(limits: Mapping[str, Any], key: str, minimum: int) -> int:
    value = limits.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"limits[{key!r}] must be an int >= {minimum}, got {value!r}")
    return value


def _read_paths() -> list[tuple[str, int]]:
    """(path, rights) pairs a worker may read: interpreter, libraries, sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))  # lazy imports of sibling modules
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    # "" (the working directory) and "/" are skipped: either would open up far
    # more than code. Entries that are not paths (import hooks) do not exist.
    candidates += [p for p in sys.path if p and os.path.isabs(p)]
    candidates += [here, *_SYSTEM_READ_DIRS]
    dirs: list[str] = []
    files: list[str] = []
    for path in dict.fromkeys(os.path.realpath(p) for p in candidates):
        if path == "/":
            continue
        if os.path.isdir(path):
            dirs.append(path)
        elif os.path.isfile(path):  # e.g. a zip on sys.path
            files.append(path)

    def covered(path: str) -> bool:
        return any(path.startswith(d.rstrip("/") + "/") for d in dirs if d != path)

    rules = [(d, _FS_READ_FILE | _FS_READ_DIR) for d in sorted(dirs) if not covered(d)]
    rules += [(f, _FS_READ_FILE) for f in sorted(files) if not covered(f)]
    rules += [(f, rights) for f, rights in _DEVICE_FILES if os.path.exists(f)]
    return rules


class Confinement:
    """Built once in the zygote, applied in each worker.

    The constructor does everything that is the same for every worker: it
    validates the limits, assembles the seccomp BPF program and computes the
    Landlock path list from ``sys.prefix``, ``sys.path`` and a few system
    library trees. Build it after the zygote's ``sys.path`` is final and
    before forking.
    """

    def __init__(self, limits: Mapping[str, Any], probed: Mapping[str, bool]) -> None:
        """Precompute all layers.

        Args:
            limits: ``Limits.to_wire()``; reads ``memory_limit_mb``,
                ``cpu_limit_s``, ``max_open_files``, ``max_file_size``,
                ``worker_uid`` and ``worker_gid``, ignores the rest.
            probed: the result of :func:`probe`.

        Raises:
            ValueError: a limit is missing its key, not an int, or out of range
                (a worker uid/gid of 0 is refused).
            OSError: ``probed`` claims a layer this process cannot build.
        """
        self._builder = os.getpid()
        self._probed = {
            key: bool(probed.get(key, False))
            for key in ("rlimits", "prctl", "setuid", "landlock", "seccomp")
        }
        memory = max(_int_limit(limits, "memory_limit_mb", 1), _MIN_ADDRESS_SPACE_MB) * _MIB
        wanted = [
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_CPU, _int_limit(limits, "cpu_limit_s", 1)),
            (resource.RLIMIT_FSIZE, _int_limit(limits, "max_file_size", 0)),
            (resource.RLIMIT_NOFILE, _int_limit(limits, "max_open_files", 1)),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NPROC, _MAX_PROCESSES),
        ]
        # Soft == hard so user code cannot raise them; never above the
        # zygote's own hard limit, which a non-root worker could not exceed.
        self._rlimits: list[tuple[int, int]] = []
        for which, value in wanted:
            hard = resource.getrlimit(which)[1]
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            self._rlimits.append((which, value))
        self._uid = _int_limit(limits, "worker_uid", 1)
        self._gid = _int_limit(limits, "worker_gid", 1)
        # Upper bound for closing fds: no fd can be numbered at or above the
        # hard RLIMIT_NOFILE the zygote had when it opened them.
        nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self._fd_ceiling = (
            2**31 - 1 if nofile_hard == resource.RLIM_INFINITY else min(nofile_hard, 2**31 - 1)
        )

        arch = _arch()
        self._ruleset_attr = _RulesetAttr(0, 0, 0)
        self._ruleset_size = 0
        self._landlock_rules: list[tuple[str, int]] = []
        self._beneath = _PathBeneathAttr(0, -1)
        if self._probed["landlock"]:
            abi = _landlock_abi()
            if abi < 1:
                raise OSError(errno.ENOSYS, "landlock: probed as available but no ABI reported")
            fs = _FS_ALL_BY_ABI.get(abi, _FS_ALL_LATEST)
            net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
            scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
            self._ruleset_attr = _RulesetAttr(fs, net, scoped)
            self._ruleset_size = 24 if abi >= 6 else 16 if abi >= 4 else 8
            self._landlock_rules = [(path, rights & fs) for path, rights in _read_paths()]

        self._filter: ctypes.Array[_SockFilter] | None = None
        self._pid_slots: list[int] = []
        self._fprog = _SockFprog(0, None)
        if self._probed["seccomp"]:
            if arch is None:
                raise OSError(errno.ENOSYS, f"seccomp: no filter for {os.uname().machine}")
            self._filter, self._pid_slots = _build_filter(arch)
            self._fprog = _SockFprog(len(self._filter), self._filter)

    @property
    def read_paths(self) -> tuple[str, ...]:
        """Paths the worker may read under Landlock (for the start-up log)."""
        return tuple(path for path, _ in self._landlock_rules)

    def apply(self, keep_fds: Sequence[int]) -> list[str]:
        """Confine the calling process; run in a freshly forked, single-threaded worker.

        Order matters: fds are closed first so nothing inherited escapes
        Landlock (it only checks at open time); the uid drop comes before
        prctl because a credential change resets PDEATHSIG and DUMPABLE;
        Landlock's ruleset is built while still privileged but enforced after
        NO_NEW_PRIVS; seccomp comes last because it denies nothing the
        earlier steps need.

        Args:
            keep_fds: fds to keep open (the worker's channel). Must not
                include 0, 1 or 2: those are pointed at /dev/null.

        Returns:
            The layers applied, in order: a subset of "fds", "pgrp",
            "rlimits", "setuid", "prctl", "landlock", "seccomp".

        Raises:
            ValueError: ``keep_fds`` includes 0, 1, 2 or a negative number.
            OSError: a layer that was probed as available failed; the message
                starts with the layer's name. The worker must then exit
                without running user code.
        """
        keep = sorted(set(keep_fds))
        if keep and keep[0] <= 2:
            raise ValueError(f"keep_fds must be > 2, got {keep_fds!r}")
        # The parent whose death PDEATHSIG reports: the zygote that built us, unless
        # apply() runs in the building process itself.
        parent = os.getppid() if os.getpid() == self._builder else self._builder
        applied: list[str] = []
        layer = "fds"
        ruleset = -1
        try:
            _close_fds(keep, self._fd_ceiling)
            applied.append(layer)

            layer = "pgrp"
            os.setpgid(0, 0)
            applied.append(layer)

            layer = "landlock"
            if self._probed["landlock"]:
                ruleset = _landlock_create(self._ruleset_attr, self._ruleset_size)
                self._landlock_add_rules(ruleset)

            layer = "rlimits"
            if self._probed["rlimits"]:
                for which, value in self._rlimits:
                    resource.setrlimit(which, (value, value))
                applied.append(layer)

            layer = "setuid"
            if self._probed["setuid"]:
                os.setgroups([])
                os.setresgid(self._gid, self._gid, self._gid)
                os.setresuid(self._uid, self._uid, self._uid)
                if os.getresuid() != (self._uid,) * 3 or os.getresgid() != (self._gid,) * 3:
                    raise OSError(errno.EPERM, "uid/gid did not change")
                applied.append(layer)

            layer = "prctl"
            if self._probed["prctl"]:
                _prctl_set(_PR_SET_NO_NEW_PRIVS, 1)  # Landlock and seccomp require it
                _prctl_set(_PR_SET_DUMPABLE, 0)
                _prctl_set(_PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != parent:  # it died before PDEATHSIG was armed
                    raise OSError(errno.ESRCH, "parent exited")
                applied.append(layer)

            layer = "landlock"
            if ruleset >= 0:
                enforce, ruleset = ruleset, -1
                _landlock_enforce(enforce)
                applied.append(layer)

            layer = "seccomp"
            if self._filter is not None:
                pid = os.getpid()
                for slot in self._pid_slots:
                    self._filter[slot].k = pid
                _install_filter(self._fprog)
                applied.append(layer)
        except OSError as exc:
            raise OSError(exc.errno, f"{layer}: {exc.strerror or exc}") from exc
        finally:
            if ruleset >= 0:
                os.close(ruleset)
        return applied

    def _landlock_add_rules(self, ruleset: int) -> None:
        """Allow reading beneath each precomputed path (opened while still privileged)."""
        for path, rights in self._landlock_rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # vanished since __init__: nothing to allow
            try:
                self._beneath.allowed_access = rights
                self._beneath.parent_fd = fd
                _checked(
                    int(
                        _syscall(
                            ctypes.c_long(_NR_LANDLOCK_ADD_RULE),
                            ctypes.c_int(ruleset),
                            ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                            ctypes.byref(self._beneath),
                            ctypes.c_uint32(0),
                        )
                    ),
                    f"add_rule {path}",
                )
            finally:
                os.close(fd)


def _landlock_create(attr: _RulesetAttr, size: int) -> int:
    """A new ruleset fd (O_CLOEXEC) handling what ``attr`` lists."""
    return _checked(
        int(
            _syscall(
                ctypes.c_long(_NR_LANDLOCK_CREATE_RULESET),
                ctypes.byref(attr),
                ctypes.c_size_t(size),
                ctypes.c_uint32(0),
            )
        ),
        "create_ruleset",
    )


def _landlock_enforce(ruleset: int) -> None:
    """Restrict the calling thread to ``ruleset``, then close it."""
    try:
        _checked(
            int(
                _syscall(
                    ctypes.c_long(_NR_LANDLOCK_RESTRICT_SELF),
                    ctypes.c_int(ruleset),
                    ctypes.c_uint32(0),
                )
            ),
            "restrict_self",
        )
    finally:
        os.close(ruleset)


def _close_fds(keep: Sequence[int], ceiling: int) -> None:
    """Point 0/1/2 at /dev/null and close every other fd not in ``keep``."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    low = 3
    for fd in keep:  # sorted, all > 2
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(ceiling, low))
