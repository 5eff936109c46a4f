# id: X03
# category: native
# title: ctypes + libc syscall(): socket(AF_INET), ptrace(ATTACH) of the runner, kill, setuid(0), unshare
# expect: refused
# expect-open: contained
# mode: all
# source: taskbox
# defence: import allowlist (ctypes); seccomp filters the syscalls whatever the caller; uid drop
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
calls = {  # x86-64 numbers; on other architectures the calls just fail
    'socket-inet': (41, 2, 1, 0),
    'ptrace-attach-runner': (101, 16, {{RUNNER_PID}}, 0, 0),
    'kill-runner-0': (62, {{RUNNER_PID}}, 0),
    'setuid-0': (105, 0),
    'unshare-newuser': (272, 0x10000000),
    'process_vm_readv-runner': (310, {{RUNNER_PID}}, 0, 0, 0, 0, 0),
}
out = {}
for name, args in calls.items():
    rc = libc.syscall(*[ctypes.c_long(a) for a in args])
    out[name] = rc if rc >= 0 else -ctypes.get_errno()
    if rc >= 0 and name != 'process_vm_readv-runner':
        out[name + '-escape'] = _esc(name)
if out['ptrace-attach-runner'] >= 0:
    libc.syscall(ctypes.c_long(101), ctypes.c_long(17), ctypes.c_long({{RUNNER_PID}}), ctypes.c_long(0), ctypes.c_long(0))
return [{'json': out}]
