# id: X16
# category: secrets
# title: list and reopen the runner's and the zygote's descriptors through /proc/<pid>/fd
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox
# defence: DUMPABLE=0 (fd links need ptrace access); Landlock (no /proc)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
out, errors = {}, []
for pid in ({{RUNNER_PID}}, os.getppid()):
    base = '/proc/%d/fd' % pid
    try:
        names = os.listdir(base)
        out[base] = {n: os.readlink(os.path.join(base, n)) for n in names[:64]}
        out[base + ':escape'] = _esc('listed-fds-of-%d' % pid)
    except OSError as e:
        errors.append(e)
if errors and not out:
    raise errors[-1]
return [{'json': out}]
