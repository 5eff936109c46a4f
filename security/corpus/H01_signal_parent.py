# id: H01
# category: process
# title: kill the parent runner / forkserver
# expect: refused
# expect-open: refused
# mode: all
# source: doc safe probe (signal 0) with a plain import instead of the len.__self__ bypass
# defence: separate uid; seccomp kill() only to own pid; Landlock signal scope
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
os.kill(os.getppid(), 0)
os.kill({{RUNNER_PID}}, 0)
return [{'json': {'escape': _esc('can-signal-parent-and-runner')}}]
