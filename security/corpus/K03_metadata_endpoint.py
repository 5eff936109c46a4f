# id: K03
# category: network
# title: cloud metadata endpoint for instance credentials
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet against the scorecard's loopback stand-in (it serves the metadata canary)
# defence: network namespace / egress deny; seccomp and Landlock (no TCP)
try:
    import urllib.request
    body = urllib.request.urlopen('http://127.0.0.1:{{METADATA_PORT}}/latest/meta-data/iam/', timeout=2).read()
except ImportError:  # the same request by hand
    import socket
    s = socket.create_connection(('127.0.0.1', {{METADATA_PORT}}), timeout=2)
    s.sendall(b'GET /latest/meta-data/iam/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n')
    body = s.recv(4096)
return [{'json': {'metadata': body.decode(errors='replace')}}]
