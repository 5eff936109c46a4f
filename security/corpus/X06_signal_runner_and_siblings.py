# id: X06
# category: process
# title: signal 0 to the runner, pid 1, every process of the uid (kill -1) and every pid in /proc
# expect: refused
# expect-open: refused
# mode: all
# victim: yes
# source: taskbox (signal 0 only: it tests permission, delivers nothing)
# defence: seccomp (kill only to own pid); Landlock signal scoping for workers sharing uid 65534
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
me = os.getpid()
out, errors = {}, []
targets = [{{RUNNER_PID}}, 1, os.getppid(), -1]
try:
    targets += [int(p) for p in os.listdir('/proc') if p.isdigit()]
except OSError as e:
    errors.append(e)
for pid in targets:
    if pid == me:
        continue
    try:
        os.kill(pid, 0)
        out[str(pid)] = _esc('can-signal-%d' % pid)
    except ProcessLookupError:
        pass
    except OSError as e:
        errors.append(e)
if errors and not out:
    raise errors[-1]
return [{'json': out}]
