# id: X14
# category: process
# title: raise the worker's own hard rlimits and switch back to uid/gid 0
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox
# defence: uid drop (no CAP_SYS_RESOURCE, no CAP_SETUID); soft == hard limits; NO_NEW_PRIVS
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os, resource
out, errors = {}, []
for name in ('RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_NPROC'):
    which = getattr(resource, name)
    soft, hard = resource.getrlimit(which)
    if hard == resource.RLIM_INFINITY:
        out[name] = 'unlimited already'
        continue
    try:
        resource.setrlimit(which, (hard, hard * 2 + 1))
        out[name] = _esc('raised-hard-' + name)
    except (OSError, ValueError) as e:
        errors.append(e)
for name, fn in (('setuid-0', lambda: os.setuid(0)), ('setgid-0', lambda: os.setgid(0))):
    try:
        fn()
        out[name] = _esc(name) if os.getuid() == 0 or os.getgid() == 0 else 'no-op'
    except OSError as e:
        errors.append(e)
if errors and not out:
    raise errors[-1]
return [{'json': out}]
