# id: J05
# category: secrets
# title: persistence: drop a .pth / sitecustomize.py / shadowing module or __pycache__ into a writable path on sys.path
# expect: refused
# expect-open: refused
# mode: all
# source: safe variant: create (and delete) an inert .pth in every sys.path entry and /tmp
# defence: read-only root FS; Landlock (no write outside a per-task tmp); runner started with -I
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os, sys
wrote, errors = [], []
for d in list(sys.path) + ['/tmp']:
    if not d or not os.path.isdir(d):
        continue
    path = os.path.join(d, 'zz_taskbox_corpus_probe.pth')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b'# inert probe\n')
        os.close(fd)
        os.unlink(path)
        wrote.append(d)
    except OSError as e:
        errors.append(e)
if errors and not wrote:
    raise errors[-1]
return [{'json': {'escape': _esc('wrote-pth-into-' + repr(wrote)) if wrote else None}}]
