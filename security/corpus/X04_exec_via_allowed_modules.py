# id: X04
# category: process
# title: run a program through whatever module allows it: os.system, posix_spawnp, subprocess, os.popen
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox
# defence: import allowlist; seccomp (clone without CLONE_THREAD, execve)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
out, errors = {}, []
probes = {
    'os.system': lambda: os.system('true') == 0,
    'os.posix_spawnp': lambda: os.waitpid(os.posix_spawnp('true', ['true'], {}), 0)[1] == 0,
}
try:
    import subprocess
    probes['subprocess.run'] = lambda: subprocess.run(['/bin/true']).returncode == 0
    probes['os.popen'] = lambda: os.popen('echo hi').read() == 'hi\n'
except ImportError as e:
    out['subprocess'] = repr(e)
for name, probe in probes.items():
    try:
        if probe():
            out[name] = _esc('ran-a-program-via-' + name)
        else:
            out[name] = 'failed'
    except OSError as e:
        errors.append(e)
if errors and not any(v != 'failed' and 'subprocess' not in k for k, v in out.items()):
    raise errors[-1]
return [{'json': out}]
