# id: H06
# category: process
# title: ignore SIGTERM / cancel alarms so in-process timeouts never fire
# expect: refused
# expect-open: limit
# mode: all
# source: doc snippet (the real thing: the runner must still end it)
# defence: parent-side timeout with SIGKILL; RLIMIT_CPU hard limit
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.alarm(0)
while True:
    pass
