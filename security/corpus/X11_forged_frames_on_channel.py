# id: X11
# category: channel
# title: write garbage and an oversized length prefix into the worker's own result channel
# expect: refused
# expect-open: limit
# mode: all
# source: taskbox
# defence: the runner parses worker frames as untrusted bytes with a size cap; one worker per task
import os, stat
wrote = []
for fd in range(3, 256):
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            continue
        os.write(fd, b'\xff\xff\xff\xff' + b'garbage' * 8)
        os.write(fd, (2**31).to_bytes(4, 'big') + b'{')
        wrote.append(fd)
    except OSError:
        pass
return [{'json': {'wrote_to': wrote}}]
