# id: X19
# category: availability
# title: flood raw print frames on the channel, past the print cap and the deadline
# expect: refused
# expect-open: limit
# mode: all
# victim: yes
# source: taskbox (issue 11: an 8 s flood outlived a 5 s deadline and froze the event loop)
# defence: the read loop yields after every batch; a worker printing past the cap is killed; the deadline kills it regardless
import os, stat, time
def channel():
    for n in range(3, 64):
        try:
            if stat.S_ISSOCK(os.fstat(n).st_mode):
                return n
        except OSError:
            pass
fd = channel()
frame = b'{"t":"print","args":["x"]}'
batch = (len(frame).to_bytes(4, 'big') + frame) * 2000
end = time.monotonic() + 8
while time.monotonic() < end:
    os.write(fd, batch)
return [{'json': {'flooded': True}}]
