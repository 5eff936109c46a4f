# id: H05
# category: process
# title: run programs: os.system / subprocess / os.exec*
# expect: refused
# expect-open: refused
# mode: all
# source: doc safe probe (posix_spawn /bin/true) with a plain import
# defence: import allowlist; seccomp (execve, execveat, clone)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
pid = os.posix_spawn('/bin/true', ['true'], {})
os.waitpid(pid, 0)
return [{'json': {'escape': _esc('spawned-pid-' + str(pid))}}]
