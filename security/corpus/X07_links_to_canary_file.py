# id: X07
# category: secrets
# title: symlink and hard link to the 0600 canary file from a writable directory, then read through them
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox
# defence: Landlock (no MAKE_SYM / REFER, no read outside the allowlist); protected_hardlinks; file mode vs uid 65534
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
out, errors = {}, []
for kind, make in (('symlink', os.symlink), ('hardlink', os.link)):
    for d in ('/tmp', '/var/tmp', '/dev/shm'):
        path = os.path.join(d, 'taskbox-corpus-X07-' + kind)
        try:
            make('{{CANARY_FILE}}', path)
        except OSError as e:
            errors.append(e)
            continue
        try:
            out[path] = _esc('made-' + kind)
            out[path + ':content'] = os.read(os.open(path, os.O_RDONLY), 200).decode(errors='replace')
        except OSError as e:
            errors.append(e)
        finally:
            os.unlink(path)
if errors and not out:
    raise errors[-1]
return [{'json': out}]
