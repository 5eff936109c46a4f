# id: H08
# category: process
# title: ptrace or /proc/<ppid>/mem to read or patch the runner's memory (same uid, dumpable)
# expect: refused
# expect-open: refused
# mode: all
# source: doc safe probe (maps) plus a read of mem, for the parent and the runner
# defence: PR_SET_DUMPABLE=0 in runner and zygote; different uid; seccomp (ptrace, process_vm_*); Landlock (no /proc)
import os
out, errors = {}, []
for pid in (os.getppid(), {{RUNNER_PID}}):
    try:
        maps = os.read(os.open('/proc/%d/maps' % pid, 0), 4096).decode(errors='replace')
        out['maps-%d' % pid] = maps[:400]
        fd = os.open('/proc/%d/mem' % pid, 0)
        start = int(maps.split('-', 1)[0], 16)
        out['mem-%d' % pid] = repr(os.pread(fd, 64, start))
    except OSError as e:
        errors.append(e)
if errors and not out:
    raise errors[-1]
return [{'json': out}]
