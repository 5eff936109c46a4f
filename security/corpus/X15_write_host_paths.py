# id: X15
# category: secrets
# title: create files in /, /etc, /root, the home directory, /var/tmp, /dev/shm and the working directory
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox (each file removed again)
# defence: Landlock (no write access outside the allowlist); uid 65534; read-only root FS
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
out, errors = {}, []
for d in ('/', '/etc', '/root', os.path.expanduser('~'), '/var/tmp', '/tmp', '/dev/shm', os.getcwd()):
    path = os.path.join(d, 'taskbox-corpus-X15')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(path)
        out[d] = _esc('created-file-in-' + d)
    except OSError as e:
        errors.append(e)
if errors and not out:
    raise errors[-1]
return [{'json': out}]
