# id: X24
# category: resources
# title: 2000 threads with 32 KiB stacks, to exhaust the uid's RLIMIT_NPROC (the runner's own, as non-root)
# expect: refused
# expect-open: limit
# mode: all
# victim: yes
# source: taskbox (issue 11: ~250 small threads exhausted the uid-wide limit; RLIMIT_AS does not stop small stacks)
# defence: RLIMIT_NPROC set from the uid's tasks at start plus a budget per worker slot, kept below the runner's own limit
import _thread, time  # _thread is built in: importable even where the stdlib is not readable
_thread.stack_size(32768)
started = 0
for i in range(2000):
    _thread.start_new_thread(time.sleep, (3,))
    started += 1
return [{'json': {'threads': started}}]
