# id: I08
# category: resource
# title: wall-clock sleep (no CPU used: RLIMIT_CPU never fires)
# expect: refused
# expect-open: limit
# mode: all
# source: doc snippet
# defence: parent wall-clock timeout (not the CPU limit)
import time
time.sleep(10**6)
