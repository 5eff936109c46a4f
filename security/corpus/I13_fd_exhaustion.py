# id: I13
# category: resource
# title: file-descriptor exhaustion
# expect: refused
# expect-open: limit
# mode: all
# source: doc safe probe (100000 dups) with a plain import
# defence: RLIMIT_NOFILE
import os
fds = [os.dup(0) for _ in range(100000)]
return [{'json': {'fds': len(fds)}}]
