# id: X05
# category: resource
# title: shared memory outside RLIMIT_AS: memfd_create and /dev/shm
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox
# defence: seccomp (memfd_create); Landlock on /dev/shm; RLIMIT_FSIZE
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
out, errors = {}, []
try:
    fd = os.memfd_create('taskbox-corpus')
    n = sum(os.write(fd, b'x' * 2**20) for _ in range(16))
    os.close(fd)
    out['memfd'] = _esc('memfd-%d-bytes' % n)
except OSError as e:
    errors.append(e)
try:
    fd = os.open('/dev/shm/taskbox-corpus-X05', os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        n = sum(os.write(fd, b'x' * 2**20) for _ in range(16))
    finally:
        os.close(fd)
        os.unlink('/dev/shm/taskbox-corpus-X05')
    out['shm'] = _esc('dev-shm-%d-bytes' % n)
except OSError as e:
    errors.append(e)
if errors and not out:
    raise errors[0]
return [{'json': out}]
