# id: J03
# category: secrets
# title: /proc/self/fd: reuse inherited descriptors (broker socket, other tasks' pipes)
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet: adopt every open fd and look for inet sockets (the broker connection)
# defence: close every fd but the task channel before user code; seccomp on socket ops
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import os, socket, stat
out = {}
for fd in range(0, 1024):
    try:
        st = os.fstat(fd)
    except OSError:
        continue
    kind = stat.S_IFMT(st.st_mode)
    desc = {stat.S_IFSOCK: 'sock', stat.S_IFIFO: 'fifo', stat.S_IFREG: 'file',
            stat.S_IFCHR: 'chr', stat.S_IFDIR: 'dir'}.get(kind, oct(kind))
    if kind == stat.S_IFSOCK:
        s = socket.socket(fileno=os.dup(fd))
        desc += ':%s' % s.family
        if s.family in (socket.AF_INET, socket.AF_INET6):
            desc += ':' + _esc('inherited-inet-socket-' + repr(s.getpeername()))
        s.detach()
    out[str(fd)] = desc
return [{'json': {'fds': out}}]
