# id: I12
# category: resource
# title: thread bomb
# expect: refused
# expect-open: limit
# mode: all
# source: doc snippet, bounded to 5000 threads of 3 s; _thread when threading cannot be imported
# defence: RLIMIT_NPROC (non-root), cgroup pids.max, RLIMIT_AS (thread stacks)
import time
try:
    import threading
    start = lambda: threading.Thread(target=time.sleep, args=(3,)).start()
except ImportError:
    import _thread
    start = lambda: _thread.start_new_thread(time.sleep, (3,))
started = 0
for i in range(5000):
    start()
    started += 1
return [{'json': {'started': started}}]
