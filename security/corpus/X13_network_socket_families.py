# id: X13
# category: network
# title: every socket family: TCP to the broker, UDP, IPv6, netlink, packet, abstract unix
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox (loopback targets only)
# defence: seccomp (socket only AF_UNIX); Landlock TCP rules and abstract-socket scoping; network namespace
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import socket
out, errors = {}, []
def attempt(name, fn):
    try:
        fn()
        out[name] = _esc(name)
    except OSError as e:
        errors.append(e)
def tcp():
    socket.create_connection(('127.0.0.1', {{BROKER_PORT}}), timeout=1).close()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'x', ('127.0.0.1', {{BROKER_PORT}}))
    s.close()
def tcp6():
    socket.create_connection(('::1', {{BROKER_PORT}}), timeout=1).close()
def netlink():
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()
def packet():
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
attempt('tcp-to-broker', tcp)
attempt('udp-sendto', udp)
attempt('tcp6-to-broker', tcp6)
attempt('netlink-socket', netlink)
attempt('packet-socket', packet)
if errors and not out:
    raise errors[0]
return [{'json': out}]
