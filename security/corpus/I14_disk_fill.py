# id: I14
# category: resource
# title: disk fill via temp files
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet, bounded to 32 MiB per directory and cleaned up
# defence: RLIMIT_FSIZE, Landlock (no write outside a per-task dir), read-only FS
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
errors, wrote = [], {}
for d in ('/tmp', '/var/tmp', '/dev/shm', os.getcwd()):
    path = os.path.join(d, 'taskbox-corpus-I14.bin')
    n = 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while n < 32 * 2**20:
                n += os.write(fd, b'x' * 2**20)
        finally:
            os.close(fd)
            os.unlink(path)
    except OSError as e:
        errors.append(e)
    if n:
        wrote[d] = n
if errors and not wrote:
    raise errors[-1]
return [{'json': {'escape': _esc('wrote-' + repr(wrote)) if max(wrote.values()) > 2**20 else None,
                  'wrote': wrote}}]
