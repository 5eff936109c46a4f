# id: H03
# category: process
# title: fork bomb
# expect: refused
# expect-open: refused
# mode: all
# source: doc safe probe (one fork) with a plain import
# defence: seccomp (clone without CLONE_THREAD); RLIMIT_NPROC
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
p = os.fork()
if p == 0:
    os._exit(0)
os.waitpid(p, 0)
return [{'json': {'escape': _esc('fork-works')}}]
