# id: K01
# category: network
# title: connect to the task broker on loopback (127.0.0.1:5679) and speak its protocol with a stolen token
# expect: refused
# expect-open: refused
# mode: all
# source: doc safe probe against the scorecard's broker port, plus one HTTP request
# defence: seccomp (socket AF_INET*), Landlock TCP connect rules, network namespace
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import socket
s = socket.create_connection(('127.0.0.1', {{BROKER_PORT}}), timeout=1)
s.sendall(b'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n')
answer = s.recv(200)
s.close()
return [{'json': {'escape': _esc('connected-to-broker'), 'answer': repr(answer)}}]
