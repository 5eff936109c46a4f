"""OS confinement of one worker process, applied before it reads any user code.

(Over 600 lines on purpose: every kernel layer and the seccomp policy with its
per-architecture tables live here, so the whole boundary is reviewed in one file.)

This module owns every kernel-level layer of the sandbox: closing inherited
fds, the process group, rlimits, the uid drop, prctl flags, Landlock and a
hand-rolled seccomp BPF filter. It shares a process with hostile code, so it
imports only the stdlib (ctypes for prctl and raw syscalls), never imports
``taskbox`` and logs nothing. Errors surface as exceptions only.

Split of work (measured costs: /work/shared/docs/sandbox-security.md, §1):

* ``probe()`` runs once in the zygote and tries each layer in a throw-away
  child, so a layer is reported only if it really installs here.
* ``Confinement.__init__`` runs once in the zygote: it validates the limits,
  resolves libc symbols, assembles the seccomp program and builds the Landlock
  ruleset with every rule (its fd is inherited by each fork; a worker enforces
  it and closes it before any user code runs, so no task can add a rule to it).
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
_MSG_OOB = 0x1
_PRIO_PROCESS = 0

# ==== The seccomp policy: an allowlist. Everything not named here fails with EPERM.
#
# One place for the whole policy, so it can be reviewed (and merged) as a unit:
# the syscalls a confined worker needs, the ones whose arguments decide, and the
# numbers of both on each supported architecture. A syscall added to the kernel
# later is denied until it is reviewed and listed here.
#
# What a worker does after confinement: run CPython (memory, futexes, signals,
# clocks, threads), import allowed modules (open/stat/read beneath the paths
# Landlock allows), talk on its inherited channel, and use a few harmless
# process-local facilities user code expects (select/epoll, socketpair, pipes,
# timers on itself). It needs no file it can change, no new socket endpoint, no
# other process, no kernel object that outlives it.

#: Allowed whatever their arguments (the kernel's seccomp cache then skips the
#: filter for them entirely). Names missing on an architecture are skipped.
_ALLOW = (
    # fds: I/O on what is open, and opening (Landlock decides which paths)
    "read", "write", "readv", "writev", "pread64", "preadv", "preadv2", "lseek", "close",
    "close_range", "dup", "dup2", "dup3", "pipe", "pipe2", "open", "openat", "openat2",
    # metadata reads (imports need stat; Landlock does not cover these)
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "getcwd",
    # memory
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "msync",
    # threads and their bookkeeping
    "futex", "set_robust_list", "rseq", "set_tid_address", "sched_yield", "getcpu",
    # signals on itself
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "rt_sigpending",
    "rt_sigtimedwait", "rt_sigsuspend", "pause",
    # time
    "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
    "getitimer", "setitimer", "alarm",
    # identity and accounting (reads only)
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups",
    "getresuid", "getresgid", "getpgid", "getpgrp", "getsid", "uname", "sysinfo",
    "getrusage", "times", "getrlimit", "getpriority", "umask",
    # waiting on its own fds
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    "getrandom", "exit", "exit_group", "restart_syscall", "wait4", "waitid",
    # sockets it already has (no bind, listen, accept, connect, setsockopt)
    "shutdown", "getsockname", "getpeername", "getsockopt",
)  # fmt: skip

#: Allowed only with the arguments the handler (a label in _program) accepts.
_BY_ARGS = {
    "clone": "clone",  # threads only, no namespace flags
    "clone3": "enosys",  # glibc then falls back to clone, whose flags BPF can read
    "socket": "socket",  # AF_UNIX stream/seqpacket (datagrams could sendto() a path)
    "socketpair": "socket",
    "kill": "self",  # signals only to itself
    "tkill": "self",
    "tgkill": "self",
    "rt_sigqueueinfo": "self",
    "rt_tgsigqueueinfo": "self",
    "prlimit64": "self_or_0",  # its own limits (raising is refused by soft == hard)
    "sched_getaffinity": "self_or_0",
    "setpriority": "prio",  # os.nice() on itself
    "prctl": "prctl",  # a few harmless options; DUMPABLE and PDEATHSIG stay as set
    "ioctl": "ioctl",  # isatty, FIONBIO, FIOCLEX, FIONREAD: nothing device-specific
    "fcntl": "fcntl",  # fd flags and dup; no locks, leases, or owner changes
    "sendto": "flags3",  # no MSG_OOB (the path of CVE-2025-38236)
    "recvfrom": "flags3",
    "sendmmsg": "flags3",
    "recvmmsg": "flags3",
    "sendmsg": "flags2",
    "recvmsg": "flags2",
}

#: prctl options a worker may use: read its own flags, name its threads.
_PRCTL_ALLOWED = (2, 3, 15, 16, 21, 38, 39)  # GET_PDEATHSIG GET_DUMPABLE SET/GET_NAME
#                                              GET_SECCOMP SET/GET_NO_NEW_PRIVS
#: ioctl requests: TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIONCLEX, FIOCLEX.
_IOCTL_ALLOWED = (0x5401, 0x5413, 0x541B, 0x5421, 0x5450, 0x5451)
#: fcntl commands: DUPFD, GETFD, SETFD, GETFL, SETFL, DUPFD_CLOEXEC, GETPIPE_SZ.
_FCNTL_ALLOWED = (0, 1, 2, 3, 4, 1030, 1032)

#: Denied by not being listed; named so the tests try each one for real. The
#: issue-11 findings first: host-wide AIO budgets, fanotify/inotify marks that see
#: past Landlock, metadata changes on files the runner owns, and new endpoints.
_DENIED_ON_PURPOSE = (
    "io_setup", "io_submit", "io_uring_setup", "fanotify_init", "fanotify_mark",
    "inotify_init", "inotify_init1", "inotify_add_watch", "chmod", "fchmod", "fchmodat",
    "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes", "utimensat",
    "futimesat", "setxattr", "lsetxattr", "fsetxattr", "getxattr", "lgetxattr",
    "fgetxattr", "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr",
    "fremovexattr", "setxattrat", "getxattrat", "listxattrat", "removexattrat",
    "file_getattr", "file_setattr", "bind", "listen", "accept", "accept4", "connect",
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev",
    "unshare", "setns", "mount", "bpf", "userfaultfd", "perf_event_open", "keyctl",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "memfd_create", "mknod", "mknodat",
    "kcmp", "shmget", "msgget", "semget", "mq_open", "setsid", "setpgid", "setuid", "setgid",
    "setresuid", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
    "rmdir", "link", "linkat", "symlink", "symlinkat", "truncate", "ftruncate", "fallocate",
    "flock", "sync", "syncfs", "fsync", "chdir", "fchdir", "chroot", "sendfile", "splice",
    "tee", "vmsplice", "mincore", "cachestat",
)  # fmt: skip

# Syscall numbers of every name above, from asm/unistd_64.h and asm-generic/unistd.h
# (the tests re-check them against the headers when those are installed). Since
# 424 numbers are the same on every architecture: _UNIFIED holds the ones newer
# than Debian 12's headers.
_UNIFIED = {"fchmodat2": 452, "cachestat": 451, "setxattrat": 463, "getxattrat": 464,
            "listxattrat": 465, "removexattrat": 466, "file_getattr": 468,
            "file_setattr": 469}
_X86_64: dict[str, int] = {
    "read": 0, "write": 1, "readv": 19, "writev": 20, "pread64": 17, "preadv": 295,
    "preadv2": 327, "lseek": 8, "close": 3, "close_range": 436, "dup": 32, "dup2": 33,
    "dup3": 292, "pipe": 22, "pipe2": 293, "open": 2, "openat": 257, "openat2": 437,
    "stat": 4, "fstat": 5, "lstat": 6, "newfstatat": 262, "statx": 332, "statfs": 137,
    "fstatfs": 138, "access": 21, "faccessat": 269, "faccessat2": 439, "readlink": 89,
    "readlinkat": 267, "getdents64": 217, "getcwd": 79, "mmap": 9, "munmap": 11,
    "mprotect": 10, "mremap": 25, "madvise": 28, "brk": 12, "msync": 26, "futex": 202,
    "set_robust_list": 273, "rseq": 334, "set_tid_address": 218, "sched_yield": 24,
    "getcpu": 309, "rt_sigaction": 13, "rt_sigprocmask": 14, "rt_sigreturn": 15,
    "sigaltstack": 131, "rt_sigpending": 127, "rt_sigtimedwait": 128, "rt_sigsuspend":
    130, "pause": 34, "nanosleep": 35, "clock_nanosleep": 230, "clock_gettime": 228,
    "clock_getres": 229, "gettimeofday": 96, "time": 201, "getitimer": 36, "setitimer":
    38, "alarm": 37, "getpid": 39, "gettid": 186, "getppid": 110, "getuid": 102,
    "geteuid": 107, "getgid": 104, "getegid": 108, "getgroups": 115, "getresuid": 118,
    "getresgid": 120, "getpgid": 121, "getpgrp": 111, "getsid": 124, "uname": 63,
    "sysinfo": 99, "getrusage": 98, "times": 100, "getrlimit": 97, "getpriority": 140,
    "umask": 95, "poll": 7, "ppoll": 271, "select": 23, "pselect6": 270, "epoll_create":
    213, "epoll_create1": 291, "epoll_ctl": 233, "epoll_wait": 232, "epoll_pwait": 281,
    "epoll_pwait2": 441, "eventfd": 284, "eventfd2": 290, "getrandom": 318, "exit": 60,
    "exit_group": 231, "restart_syscall": 219, "wait4": 61, "waitid": 247, "shutdown":
    48, "getsockname": 51, "getpeername": 52, "getsockopt": 55, "clone": 56, "clone3":
    435, "socket": 41, "socketpair": 53, "kill": 62, "tkill": 200, "tgkill": 234,
    "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "prlimit64": 302,
    "sched_getaffinity": 204, "setpriority": 141, "prctl": 157, "ioctl": 16, "fcntl":
    72, "sendto": 44, "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "sendmmsg": 307,
    "recvmmsg": 299, "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "ptrace":
    101, "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272, "setns":
    308, "mount": 165, "bind": 49, "listen": 50, "accept": 43, "accept4": 288,
    "connect": 42, "io_setup": 206, "io_submit": 209, "io_uring_setup": 425,
    "fanotify_init": 300, "fanotify_mark": 301, "inotify_init": 253, "inotify_init1":
    294, "inotify_add_watch": 254, "memfd_create": 319, "chmod": 90, "fchmod": 91,
    "fchmodat": 268, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "utime":
    132, "utimes": 235, "utimensat": 280, "futimesat": 261, "setxattr": 188,
    "lsetxattr": 189, "fsetxattr": 190, "getxattr": 191, "lgetxattr": 192, "fgetxattr":
    193, "listxattr": 194, "llistxattr": 195, "flistxattr": 196, "removexattr": 197,
    "lremovexattr": 198, "fremovexattr": 199, "setsid": 112, "setpgid": 109, "bpf": 321,
    "userfaultfd": 323, "perf_event_open": 298, "keyctl": 250, "pidfd_open": 434,
    "pidfd_getfd": 438, "pidfd_send_signal": 424, "mknodat": 259, "mknod": 133, "kcmp":
    312, "shmget": 29, "msgget": 68, "semget": 64, "mq_open": 240, "setuid": 105,
    "setgid": 106, "setresuid": 117, "unlink": 87, "unlinkat": 263, "rename": 82,
    "renameat": 264, "renameat2": 316, "mkdir": 83, "mkdirat": 258, "rmdir": 84, "link":
    86, "linkat": 265, "symlink": 88, "symlinkat": 266, "truncate": 76, "ftruncate": 77,
    "fallocate": 285, "flock": 73, "sync": 162, "syncfs": 306, "fsync": 74, "chdir": 80,
    "fchdir": 81, "chroot": 161, "sendfile": 40, "splice": 275, "tee": 276, "vmsplice":
    278, "mincore": 27
} | _UNIFIED  # fmt: skip
_AARCH64: dict[str, int] = {
    "read": 63, "write": 64, "readv": 65, "writev": 66, "pread64": 67, "preadv": 69,
    "preadv2": 286, "lseek": 62, "close": 57, "close_range": 436, "dup": 23, "dup3": 24,
    "pipe2": 59, "openat": 56, "openat2": 437, "fstat": 80, "newfstatat": 79, "statx":
    291, "statfs": 43, "fstatfs": 44, "faccessat": 48, "faccessat2": 439, "readlinkat":
    78, "getdents64": 61, "getcwd": 17, "mmap": 222, "munmap": 215, "mprotect": 226,
    "mremap": 216, "madvise": 233, "brk": 214, "msync": 227, "futex": 98,
    "set_robust_list": 99, "rseq": 293, "set_tid_address": 96, "sched_yield": 124,
    "getcpu": 168, "rt_sigaction": 134, "rt_sigprocmask": 135, "rt_sigreturn": 139,
    "sigaltstack": 132, "rt_sigpending": 136, "rt_sigtimedwait": 137, "rt_sigsuspend":
    133, "nanosleep": 101, "clock_nanosleep": 115, "clock_gettime": 113, "clock_getres":
    114, "gettimeofday": 169, "getitimer": 102, "setitimer": 103, "getpid": 172,
    "gettid": 178, "getppid": 173, "getuid": 174, "geteuid": 175, "getgid": 176,
    "getegid": 177, "getgroups": 158, "getresuid": 148, "getresgid": 150, "getpgid":
    155, "getsid": 156, "uname": 160, "sysinfo": 179, "getrusage": 165, "times": 153,
    "getrlimit": 163, "getpriority": 141, "umask": 166, "ppoll": 73, "pselect6": 72,
    "epoll_create1": 20, "epoll_ctl": 21, "epoll_pwait": 22, "epoll_pwait2": 441,
    "eventfd2": 19, "getrandom": 278, "exit": 93, "exit_group": 94, "restart_syscall":
    128, "wait4": 260, "waitid": 95, "shutdown": 210, "getsockname": 204, "getpeername":
    205, "getsockopt": 209, "clone": 220, "clone3": 435, "socket": 198, "socketpair":
    199, "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
    "rt_tgsigqueueinfo": 240, "prlimit64": 261, "sched_getaffinity": 123, "setpriority":
    140, "prctl": 167, "ioctl": 29, "fcntl": 25, "sendto": 206, "recvfrom": 207,
    "sendmsg": 211, "recvmsg": 212, "sendmmsg": 269, "recvmmsg": 243, "execve": 221,
    "execveat": 281, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
    "unshare": 97, "setns": 268, "mount": 40, "bind": 200, "listen": 201, "accept": 202,
    "accept4": 242, "connect": 203, "io_setup": 0, "io_submit": 2, "io_uring_setup":
    425, "fanotify_init": 262, "fanotify_mark": 263, "inotify_init1": 26,
    "inotify_add_watch": 27, "memfd_create": 279, "fchmod": 52, "fchmodat": 53,
    "fchown": 55, "fchownat": 54, "utimensat": 88, "setxattr": 5, "lsetxattr": 6,
    "fsetxattr": 7, "getxattr": 8, "lgetxattr": 9, "fgetxattr": 10, "listxattr": 11,
    "llistxattr": 12, "flistxattr": 13, "removexattr": 14, "lremovexattr": 15,
    "fremovexattr": 16, "setsid": 157, "setpgid": 154, "bpf": 280, "userfaultfd": 282,
    "perf_event_open": 241, "keyctl": 219, "pidfd_open": 434, "pidfd_getfd": 438,
    "pidfd_send_signal": 424, "mknodat": 33, "kcmp": 272, "shmget": 194, "msgget": 186,
    "semget": 190, "mq_open": 180, "setuid": 146, "setgid": 144, "setresuid": 147,
    "unlinkat": 35, "renameat": 38, "renameat2": 276, "mkdirat": 34, "linkat": 37,
    "symlinkat": 36, "truncate": 45, "ftruncate": 46, "fallocate": 47, "flock": 32,
    "sync": 81, "syncfs": 267, "fsync": 82, "chdir": 49, "fchdir": 50, "chroot": 51,
    "sendfile": 71, "splice": 76, "tee": 77, "vmsplice": 75, "mincore": 232
} | _UNIFIED  # fmt: skip
# machine -> (AUDIT_ARCH_* value, syscall table, whether x32 numbers exist)
_ARCHES: dict[str, tuple[int, dict[str, int], bool]] = {
    "x86_64": (0xC000003E, _X86_64, True),
    "aarch64": (0xC00000B7, _AARCH64, False),
}

_OWN_PID = -1  # placeholder k, patched with the worker's pid in apply()
_JA = 0x05  # BPF_JMP | BPF_JA: k is a (32-bit) forward offset, here a label
#: Syscalls per leaf of the filter's binary search (_dispatch).
_LEAF = 8

# An instruction before assembly: (code, jt, jf, k); a jump is 0 (fall
# through) or a label, and a JA's k is a label. A bare string defines a label.
_Insn = tuple[int, int | str, int | str, int | str]


def _ld(offset: int) -> _Insn:
    return (_LD_W_ABS, 0, 0, offset)


def _jeq(k: int, jt: int | str, jf: int | str) -> _Insn:
    return (_JEQ_K, jt, jf, k)


def _ret(k: int) -> _Insn:
    return (_RET_K, 0, 0, k)


def _one_of(values: Sequence[int]) -> list[_Insn]:
    """Allow when the loaded word is one of ``values``, else EPERM."""
    return [*(_jeq(v, "allow", 0) for v in values), (_JA, 0, 0, "eperm")]


def _dispatch(entries: Sequence[tuple[int, str]], prog: list[_Insn | str], ids: list[int]) -> None:
    """Append a binary search over ``entries`` (sorted ``(nr, label)``); misses get EPERM.

    A search, not a chain of JEQs: a syscall passes ~10 instructions instead of
    up to ~170, which is what the kernel pays per worker when it installs the
    filter (it runs the program for every syscall number to build its cache of
    always-allowed calls) and per call for the syscalls whose arguments decide.
    """
    ids[0] += 1
    here = ids[0]
    if len(entries) <= _LEAF:
        targets = dict.fromkeys(label for _nr, label in entries)
        prog += [_jeq(nr, f"{label}.{here}", 0) for nr, label in entries]
        prog.append(_ret(_RET_ERRNO | errno.EPERM))
        for label in targets:  # local hops: a JEQ reaches 255 instructions at most
            prog += [f"{label}.{here}",
                     _ret(_RET_ALLOW) if label == "allow" else (_JA, 0, 0, label)]
        return
    mid = len(entries) // 2
    prog.append((_JGE_K, f"high.{here}", 0, entries[mid][0]))
    _dispatch(entries[:mid], prog, ids)
    prog.append(f"high.{here}")
    _dispatch(entries[mid:], prog, ids)


def _program(audit_arch: int, nrs: Mapping[str, int], has_x32: bool) -> list[_Insn | str]:
    """The whole policy as a readable listing; default EPERM."""
    prog: list[_Insn | str] = [
        _ld(_OFF_ARCH),
        _jeq(audit_arch, 1, 0),  # foreign ABI (i386 int 0x80, arm32): kill
        _ret(_RET_KILL_PROCESS),
        _ld(_OFF_NR),
    ]
    if has_x32:
        prog += [(_JGE_K, 0, 1, _X32_SYSCALL_BIT), _ret(_RET_KILL_PROCESS)]
    entries = {nrs[name]: "allow" for name in _ALLOW if name in nrs}
    entries.update({nrs[name]: label for name, label in _BY_ARGS.items() if name in nrs})
    _dispatch(sorted(entries.items()), prog, [0])
    prog += [
        "clone",
        _ld(_off_arg(0)),
        (_JSET_K, 0, "eperm", _CLONE_THREAD),
        (_JSET_K, "eperm", "allow", _CLONE_NAMESPACES),
        "socket",
        _ld(_off_arg(0)),
        _jeq(_AF_UNIX, 0, "eperm"),
        _ld(_off_arg(1)),
        (_AND_K, 0, 0, _SOCK_TYPE_MASK),
        _jeq(_SOCK_STREAM, "allow", 0),
        _jeq(_SOCK_SEQPACKET, "allow", "eperm"),
        "self",  # arg0 must be this worker (not 0, not a group)
        _ld(_off_arg(0)),
        _jeq(_OWN_PID, "allow", "eperm"),
        "self_or_0",  # per-process knobs: pid 0 means "me"
        _ld(_off_arg(0)),
        _jeq(0, "allow", 0),
        _jeq(_OWN_PID, "allow", "eperm"),
        "prio",
        _ld(_off_arg(0)),
        _jeq(_PRIO_PROCESS, 0, "eperm"),
        _ld(_off_arg(1)),
        _jeq(0, "allow", 0),
        _jeq(_OWN_PID, "allow", "eperm"),
        "prctl",
        _ld(_off_arg(0)),
        *_one_of(_PRCTL_ALLOWED),
        "ioctl",
        _ld(_off_arg(1)),
        *_one_of(_IOCTL_ALLOWED),
        "fcntl",
        _ld(_off_arg(1)),
        *_one_of(_FCNTL_ALLOWED),
        "flags3",
        _ld(_off_arg(3)),
        (_JSET_K, "eperm", "allow", _MSG_OOB),
        "flags2",
        _ld(_off_arg(2)),
        (_JSET_K, "eperm", "allow", _MSG_OOB),
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
    """Resolve labels to forward offsets; return insns and own-pid slots."""
    labels: dict[str, int] = {}
    insns: list[_Insn] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def offset(at: int, target: int | str, limit: int) -> int:
        if isinstance(target, int):
            return target
        distance = labels[target] - at - 1
        if not 0 <= distance <= limit:
            raise ValueError(f"seccomp: jump to {target!r} out of range ({distance})")
        return distance

    out: list[tuple[int, int, int, int]] = []
    pid_slots: list[int] = []
    for at, (code, jt, jf, k) in enumerate(insns):
        if code == _JA:
            k = offset(at, k, 2**31 - 1)
        elif k == _OWN_PID:
            pid_slots.append(at)
            k = 0
        assert isinstance(k, int)
        out.append((code, offset(at, jt, 255), offset(at, jf, 255), k))
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
# RLIMIT_NPROC counts every process and thread of the worker's *uid* (on the host,
# or in the container), not just this task, and a worker may make ~250 threads of
# 32 KiB stacks well within RLIMIT_AS. So the limit is set from what that uid runs
# when the zygote starts, plus a budget per worker slot; a non-root runner shares
# the uid and keeps _NPROC_RESERVE below its own limit for itself and the zygote.
_THREADS_PER_WORKER = 64
_NPROC_RESERVE = 32


def _tasks_of(uid: int) -> int:
    """Threads (tasks) the kernel counts against ``uid``'s RLIMIT_NPROC right now.

    One read of each ``/proc/<pid>/status`` (about 20 us each), once per zygote.
    """
    count = 0
    want = b"\nUid:\t%d\t" % uid
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as status:
                text = status.read()
        except OSError:
            continue  # exited meanwhile
        if want in text:
            at = text.find(b"\nThreads:\t")
            if at >= 0:
                count += int(text[at + 10:text.index(b"\n", at + 10)])
    return count


def _process_limit(uid: int, workers: int, shares_uid: bool) -> int:
    """RLIMIT_NPROC for every worker: the uid's current tasks plus each slot's budget."""
    limit = _tasks_of(uid) + workers * _THREADS_PER_WORKER
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if shares_uid and soft != resource.RLIM_INFINITY:
        limit = min(limit, soft - _NPROC_RESERVE)
    return max(limit, 1)


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
    validates the limits, assembles the seccomp BPF program and builds the
    Landlock ruleset from ``sys.prefix``, ``sys.path`` and a few system
    library trees. Build it after the zygote's ``sys.path`` is final and
    before forking.
    """

    def __init__(self, limits: Mapping[str, Any], probed: Mapping[str, bool],
                 workers: int = 1) -> None:
        """Precompute all layers.

        Args:
            limits: ``Limits.to_wire()``; reads ``memory_limit_mb``,
                ``cpu_limit_s``, ``max_open_files``, ``max_file_size``,
                ``worker_uid`` and ``worker_gid``, ignores the rest.
            probed: the result of :func:`probe`.
            workers: how many workers may live at once (the zygote's target);
                sizes the shared RLIMIT_NPROC budget.

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
        ]
        self._uid = _int_limit(limits, "worker_uid", 1)
        self._gid = _int_limit(limits, "worker_gid", 1)
        drops = self._probed["setuid"]
        self.process_limit = _process_limit(
            self._uid if drops else os.getuid(), max(1, workers), shares_uid=not drops)
        wanted.append((resource.RLIMIT_NPROC, self.process_limit))
        # Soft == hard so user code cannot raise them; never above the
        # zygote's own hard limit, which a non-root worker could not exceed.
        self._rlimits: list[tuple[int, int]] = []
        for which, value in wanted:
            hard = resource.getrlimit(which)[1]
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            self._rlimits.append((which, value))
        # Upper bound for closing fds: no fd can be numbered at or above the
        # hard RLIMIT_NOFILE the zygote had when it opened them.
        nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self._fd_ceiling = (
            2**31 - 1 if nofile_hard == resource.RLIM_INFINITY else min(nofile_hard, 2**31 - 1)
        )

        arch = _arch()
        self._landlock_rules: list[tuple[str, int]] = []
        #: The Landlock ruleset, built here once with every rule: each worker only
        #: enforces it (an fd inherited through fork, closed before user code runs).
        self._ruleset = -1
        if self._probed["landlock"]:
            abi = _landlock_abi()
            if abi < 1:
                raise OSError(errno.ENOSYS, "landlock: probed as available but no ABI reported")
            fs = _FS_ALL_BY_ABI.get(abi, _FS_ALL_LATEST)
            net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
            scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
            self._landlock_rules = [(path, rights & fs) for path, rights in _read_paths()]
            self._ruleset = _landlock_ruleset(_RulesetAttr(fs, net, scoped),
                                              24 if abi >= 6 else 16 if abi >= 4 else 8,
                                              self._landlock_rules)

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
        Landlock's ruleset (built in the zygote) is enforced after
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
        # The zygote's ruleset fd: kept open through _close_fds, then enforced and
        # closed (or closed on any failure) before this returns.
        ruleset = self._ruleset
        try:
            if ruleset >= 0:
                keep = sorted({*keep, ruleset})
            _close_fds(keep, self._fd_ceiling)
            applied.append(layer)

            layer = "pgrp"
            os.setpgid(0, 0)
            applied.append(layer)

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


def _landlock_ruleset(attr: _RulesetAttr, size: int, rules: Sequence[tuple[str, int]]) -> int:
    """A ruleset allowing reads beneath each of ``rules`` (once, in the zygote).

    A rule holds the inode its path named when it was added, so the O_PATH fds
    are closed at once; a path that does not exist is skipped.
    """
    ruleset = _landlock_create(attr, size)
    beneath = _PathBeneathAttr(0, -1)
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                beneath.allowed_access = rights
                beneath.parent_fd = fd
                _checked(
                    int(
                        _syscall(
                            ctypes.c_long(_NR_LANDLOCK_ADD_RULE),
                            ctypes.c_int(ruleset),
                            ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                            ctypes.byref(beneath),
                            ctypes.c_uint32(0),
                        )
                    ),
                    f"add_rule {path}",
                )
            finally:
                os.close(fd)
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


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
