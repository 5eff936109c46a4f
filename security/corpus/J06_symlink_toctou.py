# id: J06
# category: secrets
# title: symlink/TOCTOU on files the parent later opens (result file) — Judge0 CVE-2024-28185 class
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet with a fixed path in /tmp (removed again)
# defence: results travel over a pipe, never through paths; Landlock (no MAKE_SYM)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os
link = '/tmp/taskbox-corpus-J06'
os.symlink('/proc/{{RUNNER_PID}}/environ', link)
os.unlink(link)
return [{'json': {'escape': _esc('created-symlink-in-tmp')}}]
