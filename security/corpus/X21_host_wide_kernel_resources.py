# id: X21
# category: resources
# title: take host-wide kernel budgets: Linux AIO contexts (io_setup), io_uring, fanotify and inotify marks
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox (issue 11: while a worker held AIO contexts, root outside the sandbox got EAGAIN)
# defence: the seccomp allowlist (none of these is listed: EPERM)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source
import ctypes, os, platform
libc = ctypes.CDLL(None, use_errno=True)
nr = {'x86_64': {'io_setup': 206, 'io_uring_setup': 425, 'fanotify_init': 300, 'inotify_init1': 294},
      'aarch64': {'io_setup': 0, 'io_uring_setup': 425, 'fanotify_init': 262, 'inotify_init1': 26}}[platform.machine()]
ctx = ctypes.c_ulong(0)
calls = {
    'io_setup': lambda: libc.syscall(nr['io_setup'], 65536, ctypes.byref(ctx)),
    'io_uring_setup': lambda: libc.syscall(nr['io_uring_setup'], 1, ctypes.create_string_buffer(120)),
    'fanotify_init': lambda: libc.syscall(nr['fanotify_init'], 0, 0),
    'inotify_init1': lambda: libc.syscall(nr['inotify_init1'], 0),
}
out = {}
for name, call in calls.items():
    if call() >= 0:
        out[name] = _esc(name)
    else:
        out[name] = os.strerror(ctypes.get_errno())
if all(v == os.strerror(1) for v in out.values()):
    raise PermissionError(1, 'every call: ' + os.strerror(1))
return [{'json': out}]
