# id: X18
# category: availability
# title: forge a result frame on the channel, then keep running (thread, atexit, __del__, busy loop)
# expect: refused
# expect-open: contained
# mode: all
# victim: yes
# source: taskbox (issue 11: three such tasks at concurrency 2 used to stop the runner)
# defence: the runner SIGKILLs the worker's process group after every outcome and frees the slot only once it is reaped; the scorecard's lingering check looks for it in /proc
import os, stat, threading, atexit, time
def forever():
    while True:
        time.sleep(0.01)
fd = None
for n in range(3, 64):
    try:
        if stat.S_ISSOCK(os.fstat(n).st_mode):
            fd = n
            break
    except OSError:
        pass
threading.Thread(target=forever).start()
atexit.register(forever)
class Linger:
    def __del__(self):
        forever()
keep = Linger()
body = b'{"t":"result","result":[{"json":{"forged":true}}]}'
os.write(fd, len(body).to_bytes(4, 'big') + body)
n = 0
while True:
    n += 1
