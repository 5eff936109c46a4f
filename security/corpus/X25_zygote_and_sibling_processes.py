# id: X25
# category: process
# title: open the zygote's /proc/<pid>/mem read-write, ptrace-attach to it and to the runner, signal it
# expect: refused
# expect-open: refused
# mode: all
# victim: yes
# source: taskbox (issue 11: without Landlock a same-uid worker wrote into the zygote, which forks every later worker)
# defence: zygote and runner non-dumpable before any worker exists; seccomp (ptrace, kill to others); Landlock (no /proc)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
zygote, runner = os.getppid(), {{RUNNER_PID}}
out, errors = {}, []
def mem():
    fd = os.open('/proc/%d/mem' % zygote, os.O_RDWR)
    os.close(fd)
def ptrace(pid):
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), 'ptrace %d' % pid)
attempts = {
    'zygote_mem': mem,
    'zygote_cmdline': lambda: open('/proc/%d/cmdline' % zygote, 'rb').read(),
    'ptrace_zygote': lambda: ptrace(zygote),
    'ptrace_runner': lambda: ptrace(runner),
    'signal_zygote': lambda: os.kill(zygote, 0),
}
for name, attempt in attempts.items():
    try:
        attempt()
        out[name] = _esc(name)
    except OSError as e:
        errors.append(e)
        out[name] = e.errno
if errors and not any(isinstance(v, str) for v in out.values()):
    raise errors[-1]
return [{'json': out}]
