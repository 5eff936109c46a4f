# id: X23
# category: network
# title: MSG_OOB on a unix socket (CVE-2025-38236's path), bind/listen on an abstract unix name
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox (issue 11: both worked, as root and as non-root)
# defence: the seccomp allowlist (MSG_OOB refused on send/recv; bind, listen, accept denied)
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source
import socket
out, errors = {}, []
left, right = socket.socketpair()
def squat():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind('\0taskbox-squatted-name')
    s.listen()
attempts = {
    'send_oob': lambda: left.send(b'!', socket.MSG_OOB),
    'recv_oob': lambda: right.recv(1, socket.MSG_OOB),
    'abstract_bind': squat,
    'autobind_listen': lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).listen(),
}
for name, attempt in attempts.items():
    try:
        attempt()
        out[name] = _esc(name)
    except OSError as e:
        errors.append(e)
        out[name] = e.errno
if errors and not any(isinstance(v, str) for v in out.values()):
    raise errors[-1]
return [{'json': out}]
