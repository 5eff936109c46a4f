# id: X20
# category: availability
# title: one 25 MB result frame of empty lists (about 0.5 GB once parsed by the runner)
# expect: refused
# expect-open: limit
# mode: all
# victim: yes
# source: taskbox (issue 11: a 25 MB frame took the runner from 29 MB to 790 MB)
# defence: the runner caps frames by type and estimates a large frame's parse cost before parsing it
import os, stat
def channel():
    for n in range(3, 64):
        try:
            if stat.S_ISSOCK(os.fstat(n).st_mode):
                return n
        except OSError:
            pass
fd = channel()
body = b'{"t":"result","result":[' + b'[],' * 8_500_000 + b'[]]}'
os.write(fd, len(body).to_bytes(4, 'big') + body)
while True:
    pass
