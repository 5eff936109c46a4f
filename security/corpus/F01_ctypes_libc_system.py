# id: F01
# category: native
# title: ctypes calls libc directly (system, ptrace, prctl, syscall)
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet with the probe's getpid; system() runs the harmless /bin/true
# defence: import allowlist (ctypes); seccomp (clone/execve) + Landlock as backstop
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import ctypes
libc = ctypes.CDLL(None)
rc = libc.system(b'true')
out = {'getpid': libc.getpid(), 'system_rc': rc}
if rc == 0:
    out['escape'] = _esc('libc-system-ran-a-program')
return [{'json': out}]
