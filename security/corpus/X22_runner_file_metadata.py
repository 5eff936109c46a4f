# id: X22
# category: host-files
# title: chmod (setuid bit), chown, utime, xattrs and file_setattr on a file the runner owns
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox (issue 11: as non-root these calls succeeded on the runner's files; xattrs carried data to the next task)
# defence: the seccomp allowlist (Landlock does not cover metadata calls; as non-root the file has the worker's uid)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source
import ctypes, os
path = '{{CANARY_FILE}}'
libc = ctypes.CDLL(None, use_errno=True)
calls = {
    'chmod': lambda: os.chmod(path, 0o4777),
    'chown': lambda: os.chown(path, os.getuid(), os.getgid()),
    'utime': lambda: os.utime(path, (0, 0)),
    'setxattr': lambda: os.setxattr(path, 'user.taskbox', b'next task reads this'),
    'listxattr': lambda: os.listxattr(path),
    'file_setattr': lambda: (_ for _ in ()).throw(OSError(ctypes.get_errno(), 'file_setattr'))
    if libc.syscall(469, -100, path.encode(), None, 0, 0) < 0 else None,
}
out, errors = {}, []
for name, call in calls.items():
    try:
        call()
        out[name] = _esc(name)
    except OSError as e:
        errors.append(e)
        out[name] = e.errno
if errors and not any(isinstance(v, str) for v in out.values()):
    raise errors[-1]
return [{'json': out}]
