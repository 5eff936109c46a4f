# id: X01
# category: secrets
# title: read /proc/1/environ, the runner's and the zygote's environ and cmdline
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox
# defence: runner and zygote DUMPABLE=0; Landlock (no /proc); secrets never in argv
import os

def read(path, size=65536):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)

out, errors = {}, []
for pid in (1, {{RUNNER_PID}}, os.getppid()):
    for name in ('environ', 'cmdline'):
        path = '/proc/%d/%s' % (pid, name)
        try:
            out[path] = read(path).decode(errors='replace').split(chr(0))
        except OSError as e:
            errors.append(e)
if errors and not out:
    raise errors[-1]
return [{'json': out}]
